package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/dkim"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// updateGolden rewrites testdata/api/*.json from the responses:
//
//	go test ./api/ -update
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/api")

// env is a whole Postern on loopback: a store in a temporary directory,
// the HTTP API, the SMTP intake and the relay, delivering to a recording
// SMTP peer (the mail exchanger of every domain routed with route).
type env struct {
	t    testing.TB
	st   *bolt.Store
	inst auth.Installation // the operator account and its Sandbox server
	URL  string            // the API's base URL
	SMTP string            // the intake's address
	dns  *dnstest.Server
	Peer *smtptest.Peer

	mu     sync.Mutex
	worker *relay.Worker
}

type envOptions struct {
	peer      smtptest.Options // how the mail exchanger answers
	relayOpts func(*relay.WorkerConfig)
	now       func() time.Time // the API's clock; nil: time.Now
	caps      store.Caps       // the store's caps on tenant growth; zero: none
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{Caps: opts.caps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Check(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("store consistency: %v", err)
		}
		st.Close()
	})
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, inst: inst, dns: dnstest.New(t)}
	authn := auth.NewAuthenticator(st)
	resolver := relay.NewResolver(e.dns.Addr())

	a, err := api.New(api.Config{Store: st, Auth: authn, Resolver: resolver, GenerateKeys: dkim.Generate, PublicURL: "http://postern.test", Now: opts.now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	e.URL = hs.URL

	e.Peer = smtptest.New(t, opts.peer)
	mx, err := relay.NewMXDeliverer(relay.MXConfig{
		ClientConfig: relay.ClientConfig{Hostname: "relay.postern.test", ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second},
		Resolver:     resolver,
		Port:         e.Peer.Port(),
		AllowPrivate: true, // the test peer is on loopback
	})
	if err != nil {
		t.Fatal(err)
	}
	wcfg := relay.WorkerConfig{Store: st, MX: mx, RetryBase: 50 * time.Millisecond, Rand: func() float64 { return 0.5 }, DrainTimeout: 5 * time.Second}
	if opts.relayOpts != nil {
		opts.relayOpts(&wcfg)
	}
	w, err := relay.NewWorker(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	e.worker = w
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()

	srv, err := smtpd.New(smtpd.Config{
		Hostname:     "mx.postern.test",
		Store:        st,
		Credentials:  authn,
		SenderPolicy: smtpd.PolicyAny,
		Accepted:     func(int64, string) { w.Notify() },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.SMTP = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("intake shutdown: %v", err)
		}
		// Shutdown closes only the listeners Serve has registered: when
		// the test ends before the goroutine above got that far, Serve
		// would then accept on ln forever. Closing ln makes it return.
		ln.Close()
		waitFor(t, "the intake's Serve", served)
		cancel()
		waitFor(t, "the relay's Run", ran)
	})
	return e
}

// waitFor waits for a goroutine's result, failing the test rather than
// hanging it if the goroutine does not end.
func waitFor(t testing.TB, what string, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not return within 30s of shutdown", what)
	}
}

// route makes the test's peer the mail exchanger of domain.
func (e *env) route(domain string) {
	e.dns.SetMX(domain, []dnstest.MX{{Host: "mx." + domain, Pref: 10}})
	e.dns.SetA("mx."+domain, netip.MustParseAddr("127.0.0.1"))
}

// Token headers.
const (
	accountHeader = "X-Postmark-Account-Token"
	serverHeader  = "X-Postmark-Server-Token"
)

// httpClient is the tests' client: unlike http.DefaultClient, a request
// that gets no answer fails the test instead of hanging it.
var httpClient = &http.Client{Timeout: time.Minute}

// do sends a request with the token in header (none if token is empty)
// and a JSON body (none if body is nil), and returns the status and body.
func (e *env) do(method, path, header, token string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		data, ok := body.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(body); err != nil {
				e.t.Fatal(err)
			}
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set(header, token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data
}

// account and server send requests with an account or a server token.
func (e *env) account(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	return e.do(method, path, accountHeader, token, body)
}

func (e *env) server(method, path, token string, body any) (int, []byte) {
	e.t.Helper()
	return e.do(method, path, serverHeader, token, body)
}

// wantError checks a Postmark error answer.
func wantError(t testing.TB, status int, body []byte, wantStatus, wantCode int) {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if status != wantStatus || e.ErrorCode != wantCode || e.Message == "" {
		t.Fatalf("got %d %s, want HTTP %d with ErrorCode %d", status, body, wantStatus, wantCode)
	}
}

// decodeInto decodes a 200 answer.
func decodeInto(t testing.TB, status int, body []byte, v any) {
	t.Helper()
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
}

// send submits a message over SMTP with token and returns its MessageID.
func (e *env) send(token, from string, to []string, data string) string {
	e.t.Helper()
	c, err := smtp.Dial(e.SMTP)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", token, token)); err != nil {
		e.t.Fatalf("AUTH: %v", err)
	}
	if err := c.Mail(from, nil); err != nil {
		e.t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			e.t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := io.WriteString(w, strings.ReplaceAll(data, "\n", "\r\n")); err != nil {
		e.t.Fatal(err)
	}
	// go-smtp's client gives the final reply only through CloseWithResponse.
	resp, err := w.CloseWithResponse()
	if err != nil {
		e.t.Fatal(err)
	}
	id, ok := strings.CutPrefix(resp.StatusText, "2.0.0 OK: queued as ")
	if !ok {
		e.t.Fatalf("reply %+v", resp)
	}
	c.Quit()
	return id
}

// waitFinal waits until no recipient of a message is pending and returns
// its events.
func (e *env) waitFinal(serverID int64, id string) []store.Event {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		m, err := e.st.Message(serverID, id)
		if err == nil && m.Status != store.StatusQueued {
			evs, err := e.st.Events(serverID, id)
			if err != nil {
				e.t.Fatal(err)
			}
			return evs
		}
		e.worker.Notify()
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("message %s still queued", id)
	return nil
}

// volatile are the JSON fields whose values change from run to run;
// golden files hold a placeholder for them.
var volatile = regexp.MustCompile(`^(ID|ServerID|AccountID|MessageID|BounceID|ReceivedAt|BouncedAt|DeliveredAt|CreatedAt|Date|AccountToken|ServerToken|ApiTokens|Token|Prefix|DKIMTextValue|DKIMPendingTextValue|DKIMRevokedTextValue|DKIMHost|DKIMPendingHost|DKIMRevokedHost|TextValue|Host|InboundHash|InboundAddress|ServerLink|Body|Content|Details|DeliveryMessage|DestinationIP|Summary)$`)

// golden compares a JSON body with testdata/api/<name>.json, field names
// and shapes exactly, volatile values as placeholders.
func golden(t testing.TB, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	got, err := json.MarshalIndent(normalize(v, ""), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("..", "testdata", "api", name+".json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./api/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n got: %s\nwant: %s", name, path, got, want)
	}
}

func normalize(v any, key string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out[k] = normalize(x[k], k)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalize(x[i], key)
		}
		return out
	}
	if volatile.MatchString(key) && v != nil {
		return fmt.Sprintf("<%s>", key)
	}
	return v
}
