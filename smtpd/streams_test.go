package smtpd

import (
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/unsubscribe"
	"github.com/postern/postern/store"
)

// TestStreamsOverSMTP: X-PM-Message-Stream picks any stream of the
// server; a Broadcasts message goes to one recipient, gets its
// unsubscribe link, and is refused for a recipient who unsubscribed.
func TestStreamsOverSMTP(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.UnsubscribeBase = "https://postern.example" }})
	srv := ts.Inst.ServerID
	now := time.Now()
	for _, st := range []store.Stream{
		{ServerID: srv, ID: "newsletter", Name: "News", Type: store.StreamBroadcasts, UnsubscribeHandling: "Postmark", CreatedAt: now},
		{ServerID: srv, ID: "old", Name: "Old", Type: store.StreamTransactional, CreatedAt: now, ArchivedAt: now},
	} {
		if err := ts.Store.CreateStream(st); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.Store.SuppressInStream([]store.StreamSuppression{{ServerID: srv, Stream: "newsletter", Email: "gone@example.net",
		Reason: store.ReasonManual, Origin: store.OriginRecipient, CreatedAt: now}}, nil); err != nil {
		t.Fatal(err)
	}
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	send := func(msg string, rcpts ...string) string {
		t.Helper()
		c.expect("250", "MAIL FROM:<app@example.com>")
		for _, r := range rcpts {
			c.expect("250", "RCPT TO:<%s>", r)
		}
		return c.sendData(msg)
	}
	news := "X-PM-Message-Stream: newsletter\r\nFrom: app@example.com\r\nSubject: Issue 1\r\n\r\nNews.\r\n"
	id := queuedID(t, send(news, "reader@example.net"))
	m, err := ts.Store.Message(srv, id)
	if err != nil || m.MessageStream != "newsletter" {
		t.Fatalf("stored %+v, %v", m, err)
	}
	raw, _ := ts.Store.RawMessage(srv, id)
	head := string(raw[:strings.Index(string(raw), "\r\n\r\n")])
	if !strings.HasPrefix(head, "Received: ") || !strings.Contains(head, "\r\nList-Unsubscribe: <https://postern.example/unsubscribe/") ||
		!strings.Contains(head, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n") || strings.Contains(head, "X-PM-") {
		t.Fatalf("header:\n%s", head)
	}
	key, _ := ts.Store.InstallationKey()
	link := head[strings.Index(head, "/unsubscribe/")+len("/unsubscribe/"):]
	link = link[:strings.Index(link, ">")]
	if target, err := unsubscribe.Parse(key, link); err != nil || target.Email != "reader@example.net" || target.MessageID != id || target.Stream != "newsletter" {
		t.Errorf("the link names %+v, %v", target, err)
	}

	if got := send(news, "a@example.net", "b@example.net"); !strings.HasPrefix(got, "550 5.5.3 A message of the Broadcasts stream \"newsletter\" goes to one recipient") {
		t.Errorf("two recipients: %q", got)
	}
	if got := send(news, "gone@example.net"); !strings.HasPrefix(got, "550 5.1.1 Recipient <gone@example.net> is inactive for this server: suppressed in stream newsletter") {
		t.Errorf("an unsubscribed recipient: %q", got)
	}
	// The transactional stream still reaches them.
	queuedID(t, send("From: app@example.com\r\nSubject: receipt\r\n\r\nThanks.\r\n", "gone@example.net"))
	if got := send("X-PM-Message-Stream: old\r\nSubject: s\r\n\r\nhi\r\n", "x@example.net"); !strings.HasPrefix(got, "550 5.7.1 Message stream \"old\"") {
		t.Errorf("an archived stream: %q", got)
	}
}
