package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/webhook"
)

// request is one call the receiver got.
type request struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a real HTTP server on loopback that answers each call with
// the next of its statuses (200 once they run out) and records it.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []request
	srv      *httptest.Server
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, request{req.Header.Clone(), body, time.Now()})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

// world is a whole Postern on loopback with a dispatcher calling the
// webhooks of one Live server, whose mail exchanger refuses gone@.
type world struct {
	*stack.Stack
	srv   store.Server
	token string
}

func newWorld(t *testing.T, schedule []time.Duration, allowPrivate bool) *world {
	s := stack.New(t, stack.Options{SenderPolicy: store.PolicyAny})
	s.Route("example.net", stack.Loopbacks[0])
	s.Peer(stack.Loopbacks[0], smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}})
	s.StartRelay(s.RelayConfig())
	srv, token := s.LiveServer("hooked")
	dialer := &privateaddr.Dialer{Resolve: s.Resolver.LookupIP, AllowPrivate: allowPrivate}
	d, err := webhook.New(webhook.Config{Store: s.Store, Schedule: schedule, Poll: 10 * time.Millisecond,
		Client: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &world{Stack: s, srv: srv, token: token}
}

func (w *world) hook(t *testing.T, url string) store.Webhook {
	h, err := w.Store.CreateWebhook(store.Webhook{ServerID: w.srv.ID, URL: url, MessageStream: "outbound", Secret: "hook-secret",
		HTTPAuth: &store.WebhookAuth{Username: "hook", Password: "pw"}, HTTPHeaders: []store.WebhookHeader{{Name: "X-App", Value: "crm"}},
		Triggers: store.WebhookTriggers{Delivery: true, Bounce: true, BounceContent: true}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// verify checks a request's X-Postern-Signature as a receiver would.
func verify(t *testing.T, r request, secret string) {
	t.Helper()
	sig := r.header.Get("X-Postern-Signature")
	ts, mac, ok := strings.Cut(sig, ",v1=")
	ts = strings.TrimPrefix(ts, "t=")
	sent, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || time.Since(time.Unix(sent, 0)) > time.Minute {
		t.Fatalf("signature %q", sig)
	}
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(ts + "."))
	h.Write(r.body)
	if !hmac.Equal([]byte(mac), []byte(hex.EncodeToString(h.Sum(nil)))) {
		t.Errorf("the signature does not verify: %s", sig)
	}
}

func TestDeliveryAndBounce(t *testing.T) {
	recv := newReceiver(t)
	w := newWorld(t, []time.Duration{10 * time.Millisecond}, true)
	h := w.hook(t, recv.srv.URL+"/postmark")
	id := w.Send(w.token, "app@example.com", []string{"ok@example.net", "gone@example.net"},
		"From: app@example.com\r\nTo: ok@example.net, gone@example.net\r\nSubject: hi\r\nX-PM-Tag: welcome\r\nX-PM-Metadata-user: 42\r\n\r\nHello.\r\n")
	stack.WaitFor(t, "two calls", func() bool { return len(recv.requests()) == 2 })
	byType := map[string]map[string]any{}
	for _, r := range recv.requests() {
		var p map[string]any
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		byType[p["RecordType"].(string)] = p
		verify(t, r, h.Secret)
		if u, pw, ok := (&http.Request{Header: r.header}).BasicAuth(); !ok || u != "hook" || pw != "pw" {
			t.Errorf("basic auth %q %q %v", u, pw, ok)
		}
		if r.header.Get("X-App") != "crm" || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-PM-Retries-Remaining") != "1" ||
			r.header.Get("X-PM-Webhook-Trace-Id") == "" {
			t.Errorf("headers %v", r.header)
		}
	}
	d := byType["Delivery"]
	if d["MessageID"] != id || d["Recipient"] != "ok@example.net" || d["Tag"] != "welcome" || d["ServerID"] != float64(w.srv.ID) ||
		d["MessageStream"] != "outbound" || !strings.HasPrefix(d["Details"].(string), "250") || d["Metadata"].(map[string]any)["user"] != "42" || d["DeliveredAt"] == nil {
		t.Errorf("Delivery payload %v", d)
	}
	b := byType["Bounce"]
	want := []string{"RecordType", "ID", "Type", "TypeCode", "Name", "Tag", "MessageID", "ServerID", "MessageStream", "Description", "Details",
		"Email", "From", "BouncedAt", "DumpAvailable", "Inactive", "CanActivate", "Subject", "Metadata", "Content"}
	for _, k := range want {
		if _, ok := b[k]; !ok {
			t.Errorf("Bounce payload lacks %s", k)
		}
	}
	if len(b) != len(want) {
		t.Errorf("Bounce payload has %d fields, want Postmark's %d: %v", len(b), len(want), b)
	}
	if b["Type"] != "HardBounce" || b["TypeCode"] != 1.0 || b["Email"] != "gone@example.net" || b["MessageID"] != id || b["Inactive"] != true ||
		!strings.Contains(b["Content"].(string), "550") {
		t.Errorf("Bounce payload %v", b)
	}
	bounces, err := w.Store.Bounces(w.srv.ID, store.BounceQuery{Count: 10})
	if err != nil || len(bounces.Bounces) != 1 || b["ID"] != float64(bounces.Bounces[0].ID) {
		t.Errorf("the payload's ID %v is not the bounce's: %+v, %v", b["ID"], bounces, err)
	}
	stack.WaitFor(t, "the calls recorded", func() bool {
		log, _ := w.Store.WebhookAttempts(w.srv.ID, h.ID)
		return len(log) == 2 && log[0].Status == 200 && log[1].Status == 200
	})
	if n, _ := w.Store.WebhookOutboxDepth(); n != 0 {
		t.Errorf("outbox depth %d after the calls", n)
	}
}

func TestRetriesWithTheSameTraceID(t *testing.T) {
	recv := newReceiver(t, 500, 500, 200)
	schedule := []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	w := newWorld(t, schedule, true)
	h := w.hook(t, recv.srv.URL)
	w.Send(w.token, "app@example.com", []string{"ok@example.net"}, "From: app@example.com\r\nSubject: hi\r\n\r\nHello.\r\n")
	stack.WaitFor(t, "three calls", func() bool { return len(recv.requests()) >= 3 })
	time.Sleep(100 * time.Millisecond) // a fourth call would come by now
	got := recv.requests()
	if len(got) != 3 {
		t.Fatalf("%d calls, want 3", len(got))
	}
	for i, r := range got {
		if r.header.Get("X-PM-Webhook-Trace-Id") != got[0].header.Get("X-PM-Webhook-Trace-Id") {
			t.Errorf("call %d has another trace ID", i)
		}
		if want := strconv.Itoa(len(schedule) - i); r.header.Get("X-PM-Retries-Remaining") != want {
			t.Errorf("call %d: X-PM-Retries-Remaining %q, want %s", i, r.header.Get("X-PM-Retries-Remaining"), want)
		}
		verify(t, r, h.Secret)
	}
	log, err := w.Store.WebhookAttempts(w.srv.ID, h.ID)
	if err != nil || len(log) != 3 || log[0].Status != 200 || log[1].Status != 500 || log[2].Status != 500 || !strings.Contains(log[1].Error, "500") {
		t.Errorf("log %+v, %v", log, err)
	}
	if hook, _ := w.Store.Webhook(w.srv.ID, h.ID); !hook.FailingSince.IsZero() {
		t.Errorf("a webhook that answered again is still failing: %+v", hook)
	}
}

func TestNotFoundIsNotRetried(t *testing.T) {
	recv := newReceiver(t, 404, 404, 404)
	w := newWorld(t, []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}, true)
	h := w.hook(t, recv.srv.URL)
	w.Send(w.token, "app@example.com", []string{"ok@example.net"}, "From: app@example.com\r\nSubject: hi\r\n\r\nHello.\r\n")
	stack.WaitFor(t, "the call recorded", func() bool {
		log, _ := w.Store.WebhookAttempts(w.srv.ID, h.ID)
		return len(log) == 1
	})
	time.Sleep(100 * time.Millisecond)
	if n := len(recv.requests()); n != 1 {
		t.Errorf("%d calls after a 404, want 1", n)
	}
	if n, _ := w.Store.WebhookOutboxDepth(); n != 0 {
		t.Errorf("the refused call is still in the outbox")
	}
}

func TestPrivateAddressRefusedAtTheCall(t *testing.T) {
	recv := newReceiver(t)
	w := newWorld(t, []time.Duration{time.Hour}, false)
	// The name resolves to loopback: a rebinding the creation check
	// could not see.
	w.DNS.SetA("hooks.example", netip.MustParseAddr("127.0.0.1"))
	_, port, _ := strings.Cut(strings.TrimPrefix(recv.srv.URL, "http://"), ":")
	h := w.hook(t, "http://hooks.example:"+port+"/")
	w.Send(w.token, "app@example.com", []string{"ok@example.net"}, "From: app@example.com\r\nSubject: hi\r\n\r\nHello.\r\n")
	stack.WaitFor(t, "the call recorded", func() bool {
		log, _ := w.Store.WebhookAttempts(w.srv.ID, h.ID)
		return len(log) == 1
	})
	log, _ := w.Store.WebhookAttempts(w.srv.ID, h.ID)
	if !strings.Contains(log[0].Error, "private") || log[0].Status != 0 {
		t.Errorf("call %+v, want refused as private", log[0])
	}
	if len(recv.requests()) != 0 {
		t.Error("the private address was called")
	}
}

func TestSign(t *testing.T) {
	got := webhook.Sign("secret", time.Unix(1700000000, 0), []byte(`{"a":1}`))
	h := hmac.New(sha256.New, []byte("secret"))
	h.Write([]byte(`1700000000.{"a":1}`))
	if want := "t=1700000000,v1=" + hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}
