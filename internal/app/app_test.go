package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/app"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The wiring serve runs, in-process, on each backend: a new store is
// initialised; a message submitted to the SMTP listener is delivered by
// the relay to the exchanger the DNS server names; the API shows it Sent;
// /readyz is ready; and Run, once its context ends, shuts everything down
// and closes the store.
func TestAppServesDeliversAndShutsDown(t *testing.T) {
	t.Run("bolt", func(t *testing.T) { testServesDeliversAndShutsDown(t, "") })
	t.Run("postgres", func(t *testing.T) { testServesDeliversAndShutsDown(t, pgtest.New(t)) })
}

// startNode builds a Postern from flags on loopback ports, on the store
// storeDSN names ("": bbolt in a new data directory), and runs it until
// the test ends; stop ends it sooner and returns Run's error.
func startNode(t *testing.T, storeDSN string, flags ...string) (a *app.App, stop func() error) {
	t.Helper()
	var cfg config.Config
	fs := config.FlagSet("serve", &cfg)
	if err := fs.Parse(append([]string{
		"-data", t.TempDir(), "-hostname", "postern.test",
		"-smtp-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-metrics-addr", "127.0.0.1:0", "-console-addr", "127.0.0.1:0",
		"-allow-private-destinations", "-sender-policy", "any", "-store", storeDSN,
	}, flags...)); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(fs, &cfg, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-ran:
			case <-time.After(30 * time.Second):
				runErr = errors.New("Run did not return after its context ended")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return a, stop
}

func testServesDeliversAndShutsDown(t *testing.T, storeDSN string) {
	dns := dnstest.New(t)
	peer := smtptest.New(t, smtptest.Options{})
	dns.SetMX("example.net", []dnstest.MX{{Host: "mx.example.net", Pref: 10}})
	dns.SetA("mx.example.net", netip.MustParseAddr("127.0.0.1"))
	a, stop := startNode(t, storeDSN, "-dns", dns.Addr(), "-mx-port", strconv.Itoa(peer.Port()))
	if a.Installation == nil || a.Installation.ServerToken == "" {
		t.Fatalf("a new store was not initialised: %+v", a.Installation)
	}

	token := auth.NewToken()
	srv, err := a.Store.CreateServer(store.Server{AccountID: a.Installation.AccountID, Name: "Live", DeliveryType: store.DeliveryLive, SmtpApiActivated: true}, auth.StoreToken(token), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := stack.DialAuth(a.Addr("smtp"), token)
	if err != nil {
		t.Fatal(err)
	}
	id, err := stack.Submit(c, "app@example.com", []string{"bob@example.net"}, "From: app@example.com\nTo: bob@example.net\nSubject: wired\n\nHello.\n")
	c.Close()
	if err != nil {
		t.Fatal(err)
	}

	var details api.OutboundMessageDetails
	stack.WaitFor(t, "the message Sent in the API", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+a.Addr("api")+"/messages/outbound/"+id+"/details", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Postmark-Server-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("details: HTTP %d", resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(&details); err != nil {
			t.Fatal(err)
		}
		return details.Status == store.StatusSent
	})
	if got := peer.Messages(); len(got) != 1 || !strings.Contains(string(got[0].Data), "Subject: wired") {
		t.Fatalf("the exchanger got %d messages", len(got))
	}
	if len(details.MessageEvents) != 1 || details.MessageEvents[0].Type != store.EventDelivered || srv.ID == 0 {
		t.Fatalf("events %+v", details.MessageEvents)
	}
	ready, status := fetch(t, "http://"+a.Addr("metrics")+"/readyz")
	if status != http.StatusOK {
		t.Fatalf("/readyz: HTTP %d %s", status, ready)
	}
	if storeDSN != "" {
		// A shared store names its database in /readyz, and counts its
		// pool's connections.
		if !strings.Contains(ready, `"store (PostgreSQL postgres@127.0.0.1:5432/postern_test_`) {
			t.Errorf("/readyz does not name the database: %s", ready)
		}
		if metrics, _ := fetch(t, "http://"+a.Addr("metrics")+"/metrics"); !strings.Contains(metrics, `postern_store_pool_connections{state="idle"}`) {
			t.Errorf("no pool metrics in /metrics")
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := a.Store.Ping(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("the store after Run: %v, want it closed", err)
	}
}

// A server's rate limit holds across two nodes sharing one PostgreSQL
// store: the messages either node accepted count on both.
func TestRateLimitHeldAcrossNodes(t *testing.T) {
	dsn := pgtest.New(t)
	a, _ := startNode(t, dsn)
	b, _ := startNode(t, dsn)
	if a.Installation == nil || b.Installation != nil {
		t.Fatalf("the store was initialised by %v and %v: want the first node only", a.Installation != nil, b.Installation != nil)
	}
	token := auth.NewToken()
	if _, err := a.Store.CreateServer(store.Server{AccountID: a.Installation.AccountID, Name: "Limited", DeliveryType: store.DeliveryLive,
		SmtpApiActivated: true, RateLimitPerMinute: 4}, auth.StoreToken(token), time.Now()); err != nil {
		t.Fatal(err)
	}
	send := func(node *app.App) error {
		c, err := stack.DialAuth(node.Addr("smtp"), token)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = stack.Submit(c, "app@example.com", []string{"bob@[127.0.0.1]"}, "Subject: limited\n\nHi.\n")
		return err
	}
	for i, node := range []*app.App{a, b, a, b} {
		if err := send(node); err != nil {
			t.Fatalf("message %d of 4: %v", i+1, err)
		}
	}
	for name, node := range map[string]*app.App{"A": a, "B": b} {
		var refusal *smtp.SMTPError
		if err := send(node); !errors.As(err, &refusal) || refusal.Code != 451 || refusal.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
			t.Errorf("a fifth message through node %s: %v, want 451 4.7.1", name, err)
		}
	}
}

// fetch GETs url and returns the body and status.
func fetch(t *testing.T, url string) (string, int) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp.StatusCode
}

// While the database cannot be reached, an open SMTP session gets 451
// 4.3.0 for its message and a new one 454 4.7.0 at AUTH, and nothing is
// accepted; once it is back, mail is accepted again, and what got a 250
// before is still there.
func TestDatabaseDownGives451(t *testing.T) {
	dsn := pgtest.New(t)
	a, _ := startNode(t, dsn)
	token := auth.NewToken()
	srv, err := a.Store.CreateServer(store.Server{AccountID: a.Installation.AccountID, Name: "Live", DeliveryType: store.DeliveryLive,
		SmtpApiActivated: true}, auth.StoreToken(token), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	send := func() (string, error) {
		c, err := stack.DialAuth(a.Addr("smtp"), token)
		if err != nil {
			return "", err
		}
		defer c.Close()
		return stack.Submit(c, "app@example.com", []string{"bob@[127.0.0.1]"}, "Subject: db\n\nHi.\n")
	}
	first, err := send()
	if err != nil {
		t.Fatal(err)
	}
	open, err := stack.DialAuth(a.Addr("smtp"), token)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	admin, err := pgx.Connect(context.Background(), pgtest.Server())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := admin.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`ALTER DATABASE ` + db + ` ALLOW_CONNECTIONS false`)
	defer exec(`ALTER DATABASE ` + db + ` ALLOW_CONNECTIONS true`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '` + db + `' AND pid <> pg_backend_pid()`)

	var refusal *smtp.SMTPError
	if _, err := stack.Submit(open, "app@example.com", []string{"bob@[127.0.0.1]"}, "Subject: db\n\nHi.\n"); !errors.As(err, &refusal) ||
		refusal.Code != 451 || refusal.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("a message of an open session with the database down: %v, want 451 4.3.0", err)
	}
	if _, err := send(); !errors.As(err, &refusal) || refusal.Code != 454 || refusal.EnhancedCode != (smtp.EnhancedCode{4, 7, 0}) {
		t.Fatalf("a new session with the database down: %v, want 454 4.7.0 at AUTH", err)
	}
	exec(`ALTER DATABASE ` + db + ` ALLOW_CONNECTIONS true`)
	var second string
	stack.WaitFor(t, "mail accepted again", func() bool {
		second, err = send()
		return err == nil
	})
	for _, id := range []string{first, second} {
		if _, err := a.Store.Message(srv.ID, id); err != nil {
			t.Errorf("message %s that got a 250: %v", id, err)
		}
	}
}

// pprof-addr serves Go's profiler on a listener of its own, with profiles
// that outlast the metrics listener's write timeout; off by default.
func TestPprofListener(t *testing.T) {
	a, stop := startNode(t, "")
	if addr := a.Addr("pprof"); addr != "" {
		t.Fatalf("pprof listener on %s without pprof-addr", addr)
	}
	stop()

	a, _ = startNode(t, "", "-pprof-addr", "127.0.0.1:0")
	base := "http://" + a.Addr("pprof") + "/debug/pprof/"
	if index, status := fetch(t, base); status != http.StatusOK || !strings.Contains(index, "goroutine") {
		t.Fatalf("GET %s: %d\n%s", base, status, index)
	}
	resp, err := http.Get(base + "profile?seconds=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	profile, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || len(profile) < 2 || profile[0] != 0x1f || profile[1] != 0x8b {
		t.Fatalf("CPU profile: status %d, %d bytes, err %v: want a gzipped profile", resp.StatusCode, len(profile), err)
	}
	if _, status := fetch(t, "http://"+a.Addr("metrics")+"/debug/pprof/"); status != http.StatusNotFound {
		t.Fatalf("the metrics listener serves the profiler: %d", status)
	}
}
