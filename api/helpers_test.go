package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// updateGolden rewrites testdata/api/*.json from the responses:
//
//	go test ./api/ -update
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/api")

// env is a whole Postern on loopback (see stack) with its relay
// delivering to one recording SMTP peer, the mail exchanger of every
// domain routed with route, and the HTTP API at URL.
type env struct {
	*stack.Stack
	URL  string
	Peer *smtptest.Peer
}

type envOptions struct {
	peer      smtptest.Options // how the mail exchanger answers
	relayOpts func(*relay.WorkerConfig)
	now       func() time.Time    // the API's clock; nil: time.Now
	caps      store.Caps          // the store's caps on tenant growth; zero: none
	policy    *store.SenderPolicy // the sender policy; nil: any sender
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	policy := store.PolicyAny
	if opts.policy != nil {
		policy = *opts.policy
	}
	s := stack.New(t, stack.Options{Store: bolt.Options{Caps: opts.caps}, Hostname: "mx.postern.test", SenderPolicy: policy})
	e := &env{Stack: s, Peer: s.Peer(stack.Loopbacks[0], opts.peer)}
	wcfg := s.RelayConfig()
	if opts.relayOpts != nil {
		opts.relayOpts(&wcfg)
	}
	s.StartRelay(wcfg)
	e.URL = s.ServeAPI(opts.now)
	return e
}

// route makes the test's peer the mail exchanger of domain.
func (e *env) route(domain string) { e.Route(domain, stack.Loopbacks[0]) }

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
	e.T.Helper()
	var r io.Reader
	if body != nil {
		data, ok := body.([]byte)
		if !ok {
			var err error
			if data, err = json.Marshal(body); err != nil {
				e.T.Fatal(err)
			}
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.URL+path, r)
	if err != nil {
		e.T.Fatal(err)
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
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.T.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.T.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data
}

// account and server send requests with an account or a server token.
func (e *env) account(method, path, token string, body any) (int, []byte) {
	e.T.Helper()
	return e.do(method, path, accountHeader, token, body)
}

func (e *env) server(method, path, token string, body any) (int, []byte) {
	e.T.Helper()
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
