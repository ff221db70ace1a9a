package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// liveServer initialises dir and gives its account a Live server, whose
// token it returns.
func liveServer(t *testing.T, dir string) string {
	t.Helper()
	inst, data := initialized(t, dir)
	st, err := bolt.Open(filepath.Join(data, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	token := auth.NewToken()
	if _, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "hooked", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now()); err != nil {
		t.Fatal(err)
	}
	return token
}

// TestWebhookSurvivesSIGKILL: Postern is killed while the Delivery call
// is in flight, after the event was recorded; after the restart, the
// call is made again, with the same trace ID.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	token := liveServer(t, dir)
	dns := dnstest.New(t)
	dns.SetMX("example.net", []dnstest.MX{{Host: "mx.example.net", Pref: 10}})
	dns.SetA("mx.example.net", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{})

	var mu sync.Mutex
	var traces []string
	var bodies [][]byte
	hold := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		traces = append(traces, r.Header.Get("X-PM-Webhook-Trace-Id"))
		bodies = append(bodies, body)
		first := len(traces) == 1
		mu.Unlock()
		if first {
			<-hold // the first call gets no answer: Postern dies waiting
		}
	}))
	defer recv.Close()
	defer close(hold)
	calls := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), traces...)
	}

	env := []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_WEBHOOK_ALLOW_PRIVATE=true"}
	p := startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	addr, apiURL := p.listening(t, "smtp"), "http://"+p.listening(t, "api")
	c, err := client.New(apiURL, client.ServerToken, token)
	if err != nil {
		t.Fatal(err)
	}
	var hook api.Webhook
	if _, err := c.Do(http.MethodPost, "/webhooks", map[string]any{"Url": recv.URL + "/events", "MessageStream": "outbound",
		"Triggers": map[string]any{"Delivery": map[string]bool{"Enabled": true}}}, &hook); err != nil {
		t.Fatal(err)
	}
	if hook.Secret == "" || hook.ID == 0 {
		t.Fatalf("created %+v", hook)
	}
	var again api.Webhook
	if _, err := c.Do(http.MethodGet, "/webhooks/"+strconv.FormatInt(hook.ID, 10), nil, &again); err != nil || again.Secret != "" {
		t.Errorf("the secret is shown again: %+v, %v", again, err)
	}

	id := send(t, addr, token, "rcpt@example.net", "webhook across a crash")
	stack.WaitFor(t, "the Delivery call", func() bool { return len(calls()) == 1 })
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done

	p = startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	p.listening(t, "api")
	stack.WaitFor(t, "the call made again after the restart", func() bool { return len(calls()) == 2 })
	got := calls()
	if got[0] == "" || got[1] != got[0] {
		t.Errorf("trace IDs %q, want the same twice", got)
	}
	var payload struct{ RecordType, MessageID, Recipient string }
	mu.Lock()
	json.Unmarshal(bodies[1], &payload)
	mu.Unlock()
	if payload.RecordType != "Delivery" || payload.MessageID != id || payload.Recipient != "rcpt@example.net" {
		t.Errorf("payload %+v", payload)
	}
	p.stop(t)
}

// TestWebhookPrivateURLRefused: without webhook-allow-private, a URL at a
// private address is refused when the webhook is created.
func TestWebhookPrivateURLRefused(t *testing.T) {
	dir := t.TempDir()
	token := liveServer(t, dir)
	dns := dnstest.New(t)
	dns.SetA("hooks.internal.example", netip.MustParseAddr("10.1.2.3"))
	p := startPostern(t, dir, []string{"POSTERN_DNS=" + dns.Addr()}, "serve", "-smtp-addr", "127.0.0.1:0")
	apiURL := "http://" + p.listening(t, "api")
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://[::1]/hook", "https://hooks.internal.example/hook", "http://169.254.169.254/latest/meta-data"} {
		body, _ := json.Marshal(map[string]any{"Url": u, "Triggers": map[string]any{"Delivery": map[string]bool{"Enabled": true}}})
		req, _ := http.NewRequest(http.MethodPost, apiURL+"/webhooks", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Postmark-Server-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(answer), "private") {
			t.Errorf("%s: %d %s, want 422 naming the private address", u, resp.StatusCode, answer)
		}
	}
	p.stop(t)
}
