package auth

import (
	"bytes"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewTokenIsUUIDv4AndUnique(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		tok := NewToken()
		if !uuidV4.MatchString(tok) {
			t.Fatalf("NewToken() = %q, not a version 4 UUID", tok)
		}
		if seen[tok] {
			t.Fatalf("NewToken() returned %q twice", tok)
		}
		seen[tok] = true
	}
}

func TestHash(t *testing.T) {
	a, b := NewToken(), NewToken()
	ha := Hash(a)
	if len(ha) != 32 {
		t.Fatalf("len(Hash) = %d, want 32", len(ha))
	}
	if !bytes.Equal(ha, Hash(a)) {
		t.Error("Hash is not deterministic")
	}
	if bytes.Equal(ha, Hash(b)) {
		t.Error("two different tokens have the same hash")
	}
}

func TestStoreTokenKeepsOnlyPrefix(t *testing.T) {
	tok := NewToken()
	nt := StoreToken(tok)
	if nt.Prefix != tok[:prefixLen] {
		t.Errorf("Prefix = %q, want %q", nt.Prefix, tok[:prefixLen])
	}
	if !bytes.Equal(nt.Hash, Hash(tok)) {
		t.Error("StoreToken's hash is not Hash(token)")
	}
	if got := StoreToken("abc").Prefix; got != "abc" {
		t.Errorf("StoreToken(short).Prefix = %q, want %q", got, "abc")
	}
}

// testStore is a real store in a temporary directory, initialised like
// `postern init`. The store's consistency is checked, and the store
// closed, when the test ends.
func testStore(t *testing.T) (*bolt.Store, Installation) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})
	inst, err := Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return st, inst
}

// secondServer adds a server to the installation's account and returns
// it with its token.
func secondServer(t *testing.T, st *bolt.Store, inst Installation) (store.Server, string) {
	t.Helper()
	tok := NewToken()
	srv, err := st.CreateServer(store.Server{
		AccountID:        inst.AccountID,
		Name:             "acme-staging",
		DeliveryType:     store.DeliverySandbox,
		SmtpApiActivated: true,
	}, StoreToken(tok), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return srv, tok
}

func TestInitTwice(t *testing.T) {
	st, _ := testStore(t)
	if _, err := Init(st, time.Now()); !errors.Is(err, store.ErrInitialized) {
		t.Fatalf("second Init: err = %v, want store.ErrInitialized", err)
	}
}

func TestLookup(t *testing.T) {
	st, inst := testStore(t)
	a := NewAuthenticator(st)

	srv, err := a.Lookup(inst.ServerToken)
	if err != nil {
		t.Fatalf("Lookup(server token): %v", err)
	}
	if srv.Kind != store.KindServer || srv.ServerID != inst.ServerID || srv.AccountID != inst.AccountID {
		t.Errorf("Lookup(server token) = %+v, want kind server, server %d, account %d", srv, inst.ServerID, inst.AccountID)
	}
	if srv.Prefix != inst.ServerToken[:prefixLen] {
		t.Errorf("Prefix = %q, want %q", srv.Prefix, inst.ServerToken[:prefixLen])
	}

	acct, err := a.Lookup(inst.AccountToken)
	if err != nil {
		t.Fatalf("Lookup(account token): %v", err)
	}
	if acct.Kind != store.KindAccount || acct.AccountID != inst.AccountID || acct.Role != store.RoleOwner {
		t.Errorf("Lookup(account token) = %+v, want kind account, account %d, role owner", acct, inst.AccountID)
	}

	for _, tok := range []string{"", NewToken(), "not-a-token", inst.ServerToken + " ", inst.ServerToken[:prefixLen]} {
		if _, err := a.Lookup(tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Lookup(%q): err = %v, want ErrInvalidToken", tok, err)
		}
	}
}

func TestSMTPCredentials(t *testing.T) {
	st, inst := testStore(t)
	_, otherTok := secondServer(t, st, inst)
	a := NewAuthenticator(st)
	server := inst.ServerToken

	ok := []struct {
		name               string
		username, password string
	}{
		{"token as username", server, ""},
		{"token as password", "", server},
		{"token as both", server, server},
		{"token as username, non-token password", server, "secret"},
		{"token as password, non-token username", "apikey", server},
		{"token as password, unknown UUID as username", NewToken(), server},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := a.SMTPCredentials(tc.username, tc.password)
			if err != nil {
				t.Fatalf("SMTPCredentials: %v", err)
			}
			if tok.Kind != store.KindServer || tok.ServerID != inst.ServerID {
				t.Errorf("SMTPCredentials = %+v, want server %d", tok, inst.ServerID)
			}
		})
	}

	refused := []struct {
		name               string
		username, password string
		want               error
	}{
		{"account token as username", inst.AccountToken, "", ErrAccountTokenOverSMTP},
		{"account token as password", "", inst.AccountToken, ErrAccountTokenOverSMTP},
		{"account token as both", inst.AccountToken, inst.AccountToken, ErrAccountTokenOverSMTP},
		{"account token with server token", inst.AccountToken, server, ErrAccountTokenOverSMTP},
		{"server token with account token", server, inst.AccountToken, ErrAccountTokenOverSMTP},
		{"two servers' tokens", server, otherTok, ErrAmbiguousCredentials},
		{"two servers' tokens, swapped", otherTok, server, ErrAmbiguousCredentials},
		{"unknown token", NewToken(), "", ErrInvalidToken},
		{"unknown tokens in both", NewToken(), NewToken(), ErrInvalidToken},
		{"non-tokens", "user", "password", ErrInvalidToken},
		{"empty", "", "", ErrInvalidToken},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := a.SMTPCredentials(tc.username, tc.password)
			if !errors.Is(err, tc.want) {
				t.Fatalf("SMTPCredentials = %+v, %v; want error %v", tok, err, tc.want)
			}
			if tok.Token != (store.Token{}) || tok.Hash != nil {
				t.Errorf("a refused login returned a token record: %+v", tok)
			}
		})
	}

	// The other server's token reaches the other server alone.
	tok, err := a.SMTPCredentials(otherTok, otherTok)
	if err != nil {
		t.Fatalf("second server's token: %v", err)
	}
	if tok.ServerID == inst.ServerID {
		t.Errorf("second server's token resolved to the first server")
	}
}

// Two tokens of the same server, one in each field, are not ambiguous
// (a rotation in progress).
func TestSMTPCredentialsTwoTokensOfOneServer(t *testing.T) {
	st, inst := testStore(t)
	extra := NewToken()
	nt := StoreToken(extra)
	nt.Kind, nt.AccountID, nt.ServerID = store.KindServer, inst.AccountID, inst.ServerID
	if err := st.AddToken(nt); err != nil {
		t.Fatal(err)
	}
	tok, err := NewAuthenticator(st).SMTPCredentials(inst.ServerToken, extra)
	if err != nil {
		t.Fatalf("SMTPCredentials: %v", err)
	}
	if tok.ServerID != inst.ServerID {
		t.Errorf("ServerID = %d, want %d", tok.ServerID, inst.ServerID)
	}
}

// recorder is a CredentialsFunc that remembers what it was given.
type recorder struct {
	calls              int
	username, password string
	err                error
}

func (r *recorder) check(username, password string) error {
	r.calls++
	r.username, r.password = username, password
	return r.err
}

func TestSASLPlain(t *testing.T) {
	errRefused := errors.New("refused")
	tests := []struct {
		name         string
		initial      []byte // nil: the client sends no initial response
		response     []byte
		checkErr     error
		wantErr      error // nil: success
		wantCalls    int
		wantUsername string
		wantPassword string
	}{
		{name: "no identity", initial: []byte("\x00user\x00tok"), wantCalls: 1, wantUsername: "user", wantPassword: "tok"},
		{name: "identity equals username", initial: []byte("user\x00user\x00tok"), wantCalls: 1, wantUsername: "user", wantPassword: "tok"},
		{name: "identity differs", initial: []byte("other\x00user\x00tok"), wantErr: ErrInvalidToken},
		{name: "after empty challenge", response: []byte("\x00user\x00tok"), wantCalls: 1, wantUsername: "user", wantPassword: "tok"},
		{name: "check refuses", initial: []byte("\x00user\x00tok"), checkErr: errRefused, wantErr: errRefused, wantCalls: 1, wantUsername: "user", wantPassword: "tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{err: tc.checkErr}
			s := NewSASLServer(sasl.Plain, r.check)
			if s == nil {
				t.Fatal("NewSASLServer(PLAIN) = nil")
			}
			resp := tc.initial
			if resp == nil {
				challenge, done, err := s.Next(nil)
				if err != nil || done || len(challenge) != 0 {
					t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", challenge, done, err)
				}
				resp = tc.response
			}
			challenge, done, err := s.Next(resp)
			if !done {
				t.Errorf("exchange not done after the credentials")
			}
			if len(challenge) != 0 {
				t.Errorf("unexpected challenge %q", challenge)
			}
			if tc.wantErr == nil && err != nil {
				t.Fatalf("err = %v, want success", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if r.calls != tc.wantCalls {
				t.Fatalf("check called %d times, want %d", r.calls, tc.wantCalls)
			}
			if r.username != tc.wantUsername || r.password != tc.wantPassword {
				t.Errorf("check got (%q, %q), want (%q, %q)", r.username, r.password, tc.wantUsername, tc.wantPassword)
			}
		})
	}
}

func TestSASLPlainMalformed(t *testing.T) {
	r := &recorder{}
	s := NewSASLServer(sasl.Plain, r.check)
	if _, _, err := s.Next([]byte("user\x00tok")); err == nil {
		t.Error("a response with two fields was accepted")
	}
	if r.calls != 0 {
		t.Errorf("check called %d times on a malformed response", r.calls)
	}
}

// step is one exchange of a SASL dialogue.
type step struct {
	response      []byte
	wantChallenge string
	wantDone      bool
}

func runSASL(t *testing.T, s sasl.Server, steps []step) error {
	t.Helper()
	var err error
	for i, st := range steps {
		var challenge []byte
		var done bool
		challenge, done, err = s.Next(st.response)
		if string(challenge) != st.wantChallenge || done != st.wantDone {
			t.Fatalf("step %d: Next(%q) = %q, done %v; want %q, done %v", i, st.response, challenge, done, st.wantChallenge, st.wantDone)
		}
		if !done && err != nil {
			t.Fatalf("step %d: error before the end: %v", i, err)
		}
	}
	return err
}

func TestSASLLogin(t *testing.T) {
	t.Run("without initial response", func(t *testing.T) {
		r := &recorder{}
		err := runSASL(t, NewSASLServer(sasl.Login, r.check), []step{
			{response: nil, wantChallenge: "Username:"},
			{response: []byte("user"), wantChallenge: "Password:"},
			{response: []byte("tok"), wantDone: true},
		})
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		if r.calls != 1 || r.username != "user" || r.password != "tok" {
			t.Errorf("check: %d calls, last (%q, %q); want 1 call with (user, tok)", r.calls, r.username, r.password)
		}
	})
	t.Run("with initial response", func(t *testing.T) {
		r := &recorder{}
		err := runSASL(t, NewSASLServer(sasl.Login, r.check), []step{
			{response: []byte("user"), wantChallenge: "Password:"},
			{response: []byte("tok"), wantDone: true},
		})
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		if r.calls != 1 || r.username != "user" || r.password != "tok" {
			t.Errorf("check: %d calls, last (%q, %q); want 1 call with (user, tok)", r.calls, r.username, r.password)
		}
	})
	t.Run("refused", func(t *testing.T) {
		r := &recorder{err: ErrInvalidToken}
		err := runSASL(t, NewSASLServer(sasl.Login, r.check), []step{
			{response: nil, wantChallenge: "Username:"},
			{response: []byte(""), wantChallenge: "Password:"},
			{response: []byte("tok"), wantDone: true},
		})
		if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("err = %v, want ErrInvalidToken", err)
		}
		if r.calls != 1 || r.username != "" || r.password != "tok" {
			t.Errorf("check: %d calls, last (%q, %q); want 1 call with (\"\", tok)", r.calls, r.username, r.password)
		}
	})
	t.Run("response after the end", func(t *testing.T) {
		r := &recorder{}
		s := NewSASLServer(sasl.Login, r.check)
		runSASL(t, s, []step{
			{response: []byte("user"), wantChallenge: "Password:"},
			{response: []byte("tok"), wantDone: true},
		})
		_, done, err := s.Next([]byte("more"))
		if !done || !errors.Is(err, sasl.ErrUnexpectedClientResponse) {
			t.Errorf("Next after the end = done %v, %v; want done, ErrUnexpectedClientResponse", done, err)
		}
		if r.calls != 1 {
			t.Errorf("check called %d times, want 1", r.calls)
		}
	})
}

func TestSASLWithAuthenticator(t *testing.T) {
	st, inst := testStore(t)
	a := NewAuthenticator(st)
	var got store.Token
	check := func(username, password string) error {
		tok, err := a.SMTPCredentials(username, password)
		got = tok.Token
		return err
	}
	s := NewSASLServer(sasl.Plain, check)
	if _, done, err := s.Next([]byte("\x00" + inst.ServerToken + "\x00" + inst.ServerToken)); !done || err != nil {
		t.Fatalf("PLAIN with the server token: done %v, err %v", done, err)
	}
	if got.ServerID != inst.ServerID {
		t.Errorf("PLAIN resolved to server %d, want %d", got.ServerID, inst.ServerID)
	}
	s = NewSASLServer(sasl.Login, check)
	err := runSASL(t, s, []step{
		{response: nil, wantChallenge: "Username:"},
		{response: []byte(inst.AccountToken), wantChallenge: "Password:"},
		{response: []byte("x"), wantDone: true},
	})
	if !errors.Is(err, ErrAccountTokenOverSMTP) {
		t.Errorf("LOGIN with the account token: err = %v, want ErrAccountTokenOverSMTP", err)
	}
}

func TestSASLMechanisms(t *testing.T) {
	check := func(string, string) error { return nil }
	for _, mech := range Mechanisms {
		if NewSASLServer(mech, check) == nil {
			t.Errorf("NewSASLServer(%q) = nil for an offered mechanism", mech)
		}
	}
	for _, mech := range []string{"CRAM-MD5", "XOAUTH2", sasl.OAuthBearer, sasl.Anonymous, sasl.External, "plain", "login", ""} {
		if s := NewSASLServer(mech, check); s != nil {
			t.Errorf("NewSASLServer(%q) = %T, want nil", mech, s)
		}
	}
}

// clock is a settable clock for the throttle.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time             { return c.now }
func (c *clock) advance(d time.Duration)    { c.now = c.now.Add(d) }
func newClock() *clock                      { return &clock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }
func throttleFor(c *clock, n int) *Throttle { return newThrottle(c, n, 5*time.Minute, 0) }
func newThrottle(c *clock, n int, w time.Duration, max int) *Throttle {
	return NewThrottle(ThrottleConfig{Failures: n, Window: w, MaxTracked: max, Now: c.Now})
}

const addrA, addrB = "192.0.2.1", "198.51.100.7"

func assertNotBlocked(t *testing.T, th *Throttle, addr string) {
	t.Helper()
	if blocked, until := th.Blocked(addr); blocked || !until.IsZero() {
		t.Fatalf("Blocked(%s) = %v, %v; want false, zero time", addr, blocked, until)
	}
}

func assertBlockedUntil(t *testing.T, th *Throttle, addr string, want time.Time) {
	t.Helper()
	blocked, until := th.Blocked(addr)
	if !blocked || !until.Equal(want) {
		t.Fatalf("Blocked(%s) = %v, %v; want true, %v", addr, blocked, until, want)
	}
}

func TestThrottleBlocksAtN(t *testing.T) {
	c := newClock()
	th := throttleFor(c, 5)
	for i := 1; i < 5; i++ {
		if th.Fail(addrA) {
			t.Fatalf("failure %d of 5 blocked", i)
		}
		assertNotBlocked(t, th, addrA)
		c.advance(time.Second)
	}
	if !th.Fail(addrA) {
		t.Fatal("failure 5 of 5 did not block")
	}
	blockedAt := c.now
	assertBlockedUntil(t, th, addrA, blockedAt.Add(5*time.Minute))
	assertNotBlocked(t, th, addrB)
	if th.Fail(addrB) {
		t.Fatal("another address's first failure blocked it")
	}

	// Still blocked just before the window has passed, free at its end.
	c.advance(5*time.Minute - time.Nanosecond)
	assertBlockedUntil(t, th, addrA, blockedAt.Add(5*time.Minute))
	c.advance(time.Nanosecond)
	assertNotBlocked(t, th, addrA)

	// The failures that caused the block are forgotten: a fresh count.
	for i := 1; i < 5; i++ {
		if th.Fail(addrA) {
			t.Fatalf("after the block: failure %d of 5 blocked", i)
		}
	}
}

func TestThrottleOldFailuresDoNotCount(t *testing.T) {
	c := newClock()
	th := throttleFor(c, 3)
	th.Fail(addrA)
	th.Fail(addrA)
	c.advance(5 * time.Minute) // both exactly a window old: out of it
	if th.Fail(addrA) {
		t.Fatal("failures a window old counted")
	}
	assertNotBlocked(t, th, addrA)
	c.advance(time.Minute)
	if th.Fail(addrA) {
		t.Fatal("2 failures within the window blocked (limit 3)")
	}
	c.advance(time.Minute)
	if !th.Fail(addrA) {
		t.Fatal("3 failures within the window did not block")
	}
	assertBlockedUntil(t, th, addrA, c.now.Add(5*time.Minute))
}

// A success forgives nothing: 4 failures, a valid login, 4 more, and so
// on, is a guesser who holds one valid token, and the 5th failure within
// the window shuts it out.
func TestThrottleSuccessForgivesNothing(t *testing.T) {
	c := newClock()
	th := throttleFor(c, 5)
	for range 4 {
		if th.Fail(addrA) {
			t.Fatal("blocked before the 5th failure")
		}
	}
	// (A valid login here is not reported to the throttle at all.)
	if !th.Fail(addrA) {
		t.Fatal("the 5th failure, after a valid login, did not block")
	}
	assertBlockedUntil(t, th, addrA, c.now.Add(5*time.Minute))
}

func TestThrottleDisabled(t *testing.T) {
	c := newClock()
	th := throttleFor(c, 0)
	for range 100 {
		if th.Fail(addrA) {
			t.Fatal("a disabled throttle blocked")
		}
	}
	assertNotBlocked(t, th, addrA)
	if n := th.tracked(); n != 0 {
		t.Errorf("a disabled throttle tracks %d addresses", n)
	}

	var nilThrottle *Throttle
	if nilThrottle.Fail(addrA) {
		t.Error("a nil throttle blocked")
	}
	assertNotBlocked(t, nilThrottle, addrA)
}

func TestThrottleMaxTracked(t *testing.T) {
	const max = 100
	c := newClock()
	th := newThrottle(c, 3, 5*time.Minute, max)
	for i := range 3 * max {
		th.Fail("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256))
		if n := th.tracked(); n > max {
			t.Fatalf("after %d addresses: %d tracked, more than MaxTracked %d", i+1, n, max)
		}
	}
	// The newest address is always kept: its failures count.
	last := "10.0." + strconv.Itoa((3*max-1)/256) + "." + strconv.Itoa((3*max-1)%256)
	th.Fail(last)
	if !th.Fail(last) {
		t.Error("the most recent address's failures were forgotten")
	}

	// The least recently failing address is the one forgotten: one that
	// keeps failing is kept through a flood of new ones.
	th2 := newThrottle(c, 3, 5*time.Minute, max)
	th2.Fail(addrA)
	for i := range 3 * max {
		th2.Fail("10.1." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256))
		if i == max/2 {
			th2.Fail(addrA)
		}
		if i == max/2+max-2 && !th2.Fail(addrA) {
			t.Fatal("addrA's failures were forgotten while it kept failing")
		}
	}

	// An address shut out now is never forgotten, whatever the flood.
	th3 := newThrottle(c, 2, 5*time.Minute, max)
	th3.Fail(addrA)
	if !th3.Fail(addrA) {
		t.Fatal("addrA not blocked")
	}
	blockedUntil := c.now.Add(5 * time.Minute)
	for i := range 10 * max {
		th3.Fail("10.2." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256))
	}
	assertBlockedUntil(t, th3, addrA, blockedUntil)
	if n := th3.tracked(); n != max+1 {
		t.Errorf("%d tracked, want MaxTracked counting and the one shut out", n)
	}
	// When the shut-out ends, it is gone.
	c.advance(5 * time.Minute)
	assertNotBlocked(t, th3, addrA)
	if n := th3.tracked(); n != max {
		t.Errorf("%d tracked after the shut-out ended, want %d", n, max)
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th := NewThrottle(ThrottleConfig{Failures: 5, Window: time.Minute, MaxTracked: 50})
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				addr := "10.2." + strconv.Itoa(g) + "." + strconv.Itoa(i%64)
				th.Fail(addr)
				th.Blocked(addr)
			}
		}()
	}
	for range 8 {
		<-done
	}
	th.mu.Lock()
	n := len(th.counting)
	th.mu.Unlock()
	if n > 50 {
		t.Errorf("%d addresses counting, more than MaxTracked 50", n)
	}
}

// BenchmarkThrottleDistinctAddresses: failures from 1M distinct
// addresses, one after another, against the default table of 100,000:
// every new address evicts the least recent one. Before the LRU, a full
// table walked all its entries for each new address.
func BenchmarkThrottleDistinctAddresses(b *testing.B) {
	const distinct = 1_000_000
	addrs := make([]string, distinct)
	for i := range addrs {
		addrs[i] = "10." + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
	}
	th := NewThrottle(ThrottleConfig{Failures: 5, Window: 5 * time.Minute})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		th.Fail(addrs[i%distinct])
	}
}
