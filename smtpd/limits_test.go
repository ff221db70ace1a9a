package smtpd

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// limitsFixture is a store with two Sandbox servers, A (limited) and B
// (not), and listeners on it that can be restarted over the same file.
type limitsFixture struct {
	t            *testing.T
	path         string
	clock        *clock
	st           *bolt.Store
	addr         string
	aID, bID     int64
	aTok, bTok   string
	stopListener func()
}

func newLimitsFixture(t *testing.T, now time.Time, limit func(*store.Server)) *limitsFixture {
	t.Helper()
	f := &limitsFixture{t: t, path: filepath.Join(t.TempDir(), bolt.FileName), clock: &clock{t: now}}
	st, err := bolt.Open(f.path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	inst, err := auth.Init(st, now)
	if err != nil {
		t.Fatal(err)
	}
	f.aID, f.aTok = inst.ServerID, inst.ServerToken
	a, err := st.Server(f.aID)
	if err != nil {
		t.Fatal(err)
	}
	limit(&a)
	if err := st.UpdateServer(a); err != nil {
		t.Fatal(err)
	}
	f.bTok = auth.NewToken()
	b, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "B", DeliveryType: store.DeliverySandbox, SmtpApiActivated: true}, auth.StoreToken(f.bTok), now)
	if err != nil {
		t.Fatal(err)
	}
	f.bID = b.ID
	f.listen()
	t.Cleanup(func() {
		f.stopListener()
		if err := f.st.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		f.st.Close()
	})
	return f
}

// listen starts a listener on f.st.
func (f *limitsFixture) listen() {
	f.t.Helper()
	srv, err := New(Config{
		Hostname:    "mx.test.example",
		Store:       f.st,
		Credentials: auth.NewAuthenticator(f.st),
		Now:         f.clock.Now,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	f.stopListener = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			f.t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			f.t.Errorf("serve: %v", err)
		}
		f.stopListener = func() {}
	}
}

// restart stops the listener, closes the store, reopens it and starts a
// new listener: nothing in memory survives.
func (f *limitsFixture) restart() {
	f.t.Helper()
	f.stopListener()
	if err := f.st.Close(); err != nil {
		f.t.Fatal(err)
	}
	st, err := bolt.Open(f.path, bolt.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.st = st
	f.listen()
}

// send sends one message with token over a new session and returns the
// reply to MAIL FROM if it is not 250, else the reply to the data.
func (f *limitsFixture) send(token string) string {
	f.t.Helper()
	c := authenticated(f.t, f.addr, token)
	defer c.cmd("QUIT")
	if got := c.cmd("MAIL FROM:<app@example.com>"); !strings.HasPrefix(got, "250") {
		return got
	}
	c.expect("250", "RCPT TO:<alice@example.net>")
	return c.sendData(testMessage)
}

func (f *limitsFixture) mustAccept(who, token string) {
	f.t.Helper()
	if got := f.send(token); !strings.HasPrefix(got, "250 2.0.0") {
		f.t.Fatalf("%s: %q, want acceptance", who, got)
	}
}

func TestRateLimitPerServer(t *testing.T) {
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f := newLimitsFixture(t, start, func(s *store.Server) { s.RateLimitPerMinute = 3 })
	for i := 0; i < 3; i++ {
		f.clock.Set(start.Add(time.Duration(i) * 10 * time.Second))
		f.mustAccept("A within its rate", f.aTok)
	}
	const want = "451 4.7.1 Server rate limit of 3 messages per minute reached; try again in a minute"
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A over its rate: %q, want %q", got, want)
	}
	// Another server is unaffected.
	for i := 0; i < 5; i++ {
		f.mustAccept("B while A is limited", f.bTok)
	}
	// A restart forgets nothing: the count is read from the store.
	f.restart()
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A after a restart: %q, want %q", got, want)
	}
	f.mustAccept("B after a restart", f.bTok)
	// 60 seconds after its first message, A may send one more, and only one.
	f.clock.Set(start.Add(60*time.Second + time.Millisecond))
	f.mustAccept("A a minute later", f.aTok)
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A at its rate again: %q, want %q", got, want)
	}
	f.clock.Set(start.Add(2 * time.Minute))
	f.mustAccept("A two minutes later", f.aTok)
}

func TestDailyQuotaPerServer(t *testing.T) {
	start := time.Date(2026, 3, 2, 23, 58, 0, 0, time.UTC)
	f := newLimitsFixture(t, start, func(s *store.Server) { s.DailyQuota = 2 })
	f.mustAccept("A 1", f.aTok)
	f.mustAccept("A 2", f.aTok)
	const want = "451 4.7.1 Server daily quota of 2 messages reached; it resets at 00:00 UTC"
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A over its quota: %q, want %q", got, want)
	}
	for i := 0; i < 3; i++ {
		f.mustAccept("B while A is over its quota", f.bTok)
	}
	f.restart()
	f.clock.Set(start.Add(time.Minute + 59*time.Second)) // 23:59:59
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A after a restart: %q, want %q", got, want)
	}
	// The next UTC day.
	f.clock.Set(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC))
	f.mustAccept("A the next day", f.aTok)
	f.mustAccept("A the next day", f.aTok)
	if got := f.send(f.aTok); got != want {
		t.Fatalf("A over its quota the next day: %q, want %q", got, want)
	}
}

// A session that passed MAIL FROM is checked again before its message is
// stored, and a limit changed during a session applies to it.
func TestLimitRecheckedAtData(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f := newLimitsFixture(t, now, func(s *store.Server) {})
	c := authenticated(t, f.addr, f.aTok)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	a, err := f.st.Server(f.aID)
	if err != nil {
		t.Fatal(err)
	}
	a.RateLimitPerMinute = 1
	if err := f.st.UpdateServer(a); err != nil {
		t.Fatal(err)
	}
	f.mustAccept("A's first message of the minute", f.aTok)
	const want = "451 4.7.1 Server rate limit of 1 messages per minute reached"
	if got := c.sendData(testMessage); !strings.HasPrefix(got, want) {
		t.Fatalf("DATA over the rate: %q, want %q…", got, want)
	}
	if n, err := f.st.SentSince(f.aID, now.Add(-time.Minute), 0); err != nil || n != 1 {
		t.Fatalf("stored %d messages (%v), want 1", n, err)
	}
	// The session goes on: the next minute, it may send.
	f.clock.Set(now.Add(2 * time.Minute))
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	queuedID(t, c.sendData(testMessage))
}

// A failing store is a temporary failure, not a pass.
func TestLimitCheckFailure(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	f := newLimitsFixture(t, now, func(s *store.Server) { s.RateLimitPerMinute = 10 })
	srv, err := New(Config{Hostname: "mx.test.example", Store: limitsFailing{f.st}, Credentials: auth.NewAuthenticator(f.st), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	c := authenticated(t, ln.Addr().String(), f.aTok)
	c.expect("451 4.3.0 Temporary failure checking the server's sending limits", "MAIL FROM:<app@example.com>")
	c.expect("221", "QUIT")
	// B has no limits: no count is read.
	c = authenticated(t, ln.Addr().String(), f.bTok)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("221", "QUIT")
}

type limitsFailing struct{ *bolt.Store }

func (limitsFailing) SentSince(int64, time.Time, int) (int, error) {
	return 0, errors.New("disk on fire")
}
