package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/postern/postern/internal/verp"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/dkimtest"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// A message to two domains reaches each domain's mail exchanger once,
// with two DKIM signatures (RSA and Ed25519) that verify against the
// records the domain published, without X-PM-* or Bcc fields; each
// recipient gets a Delivered event naming the server that took it.
func TestE2ETwoDomainsSignedAndDelivered(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	netPeer := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	orgPeer := e.Peer(stack.Loopbacks[1], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	e.Route("example.org", stack.Loopbacks[1])
	e.StartRelay(e.RelayConfig())

	rcpts := []string{"alice@example.net", "bob@example.org", "hidden@example.net"}
	id := e.Send(token, "app@example.com", rcpts, testBody("app@example.com", "alice@example.net, bob@example.org", "Two domains"))
	evs := e.WaitFinal(srv.ID, id)

	wantIP := map[string]string{"example.net": "127.0.0.1", "example.org": "127.0.0.2"}
	for _, r := range rcpts {
		if got := eventTypes(evs, r); len(got) != 1 || got[0] != store.EventDelivered {
			t.Errorf("%s: events %v, want [Delivered]", r, got)
		}
	}
	for _, ev := range evs {
		domain := ev.Recipient[strings.IndexByte(ev.Recipient, '@')+1:]
		d := ev.Details
		if d.DestinationServer != "mx."+domain || d.DestinationIP != wantIP[domain] {
			t.Errorf("%s: destination %q [%s], want mx.%s [%s]", ev.Recipient, d.DestinationServer, d.DestinationIP, domain, wantIP[domain])
		}
		if d.Signed != "example.com" || !strings.HasPrefix(d.DeliveryMessage, "250") {
			t.Errorf("%s: details %+v", ev.Recipient, d)
		}
	}
	if msg, _ := e.Store.Message(srv.ID, id); msg.Status != store.StatusSent {
		t.Errorf("message status %q, want Sent", msg.Status)
	}

	for name, p := range map[string]*smtptest.Peer{"example.net": netPeer, "example.org": orgPeer} {
		msgs := p.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%s received %d messages, want 1", name, len(msgs))
		}
		m := msgs[0]
		if m.From != "app@example.com" {
			t.Errorf("%s: MAIL FROM %q, want the client's envelope sender", name, m.From)
		}
		h := strings.ToLower(header(m.Data))
		if strings.Contains(h, "\nx-pm-") || strings.Contains(h, "\nbcc:") || strings.Contains(h, "hidden@") {
			t.Errorf("%s: X-PM-* or Bcc arrived:\n%s", name, header(m.Data))
		}
		verifications, err := msgdkim.VerifyWithOptions(bytes.NewReader(m.Data), &msgdkim.VerifyOptions{
			LookupTXT: func(name string) ([]string, error) { return e.Resolver.LookupTXT(context.Background(), name) },
		})
		if err != nil {
			t.Fatal(err)
		}
		algorithms := map[string]bool{}
		for _, v := range verifications {
			if v.Err != nil || v.Domain != "example.com" {
				t.Errorf("%s: signature of %s: %v", name, v.Domain, v.Err)
			}
			for _, k := range strings.Split(string(m.Data), "DKIM-Signature:")[1:] {
				if strings.Contains(k, "a=ed25519-sha256") {
					algorithms["ed25519"] = true
				}
				if strings.Contains(k, "a=rsa-sha256") {
					algorithms["rsa"] = true
				}
			}
		}
		if len(verifications) != 2 || !algorithms["ed25519"] || !algorithms["rsa"] {
			t.Errorf("%s: %d signatures (%v), want RSA and Ed25519", name, len(verifications), algorithms)
		}
	}
	if got := netPeer.Messages()[0].To; len(got) != 2 {
		t.Errorf("example.net's exchanger got RCPT %v, want both of its recipients in one transaction", got)
	}
}

// With a return-path domain, MAIL FROM names the message.
func TestE2EReturnPath(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	cfg := e.RelayConfig()
	cfg.ReturnPathDomain, cfg.ReturnPathKey = "Bounces.Postern.Test.", []byte("the installation's key")
	e.StartRelay(cfg)

	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Return path"))
	e.WaitFinal(srv.ID, id)
	want := verp.Local(cfg.ReturnPathKey, srv.ID, id) + "@bounces.postern.test"
	if msgs := p.Messages(); len(msgs) != 1 || msgs[0].From != want {
		t.Fatalf("messages %+v, want one with MAIL FROM %s", msgs, want)
	}
	if srvID, msgID, ok := verp.Parse(cfg.ReturnPathKey, strings.Split(want, "@")[0]); !ok || srvID != srv.ID || msgID != id {
		t.Errorf("the return path names %d %s", srvID, msgID)
	}

	// The From domain's own Return-Path domain, once verified, takes its
	// place; not before.
	d, err := e.Store.DomainByName("example.com")
	if err != nil {
		t.Fatal(err)
	}
	for _, verified := range []bool{false, true} {
		if _, err := e.Store.ModifyDomain(d.ID, func(d *store.Domain) error {
			d.ReturnPathDomain, d.ReturnPathVerified = "pm-bounces.example.com", verified
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Own return path"))
		e.WaitFinal(srv.ID, id)
		msgs := p.Messages()
		want := "@bounces.postern.test"
		if verified {
			want = "@pm-bounces.example.com"
		}
		if got := msgs[len(msgs)-1].From; !strings.HasSuffix(got, want) || !strings.HasPrefix(got, verp.Local(cfg.ReturnPathKey, srv.ID, id)) {
			t.Errorf("verified %v: MAIL FROM %s, want ...%s", verified, got, want)
		}
	}
}

// A 450 is Transient and retried; the retry is delivered. The signature
// made at the first attempt is the one sent at the retry.
func TestE2ETransientThenDelivered(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	var rcpts atomic.Int32
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{Rcpt: func(string) error {
		if rcpts.Add(1) == 1 {
			return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Greylisted, come back later"}
		}
		return nil
	}})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Greylisted"))
	evs := e.WaitFinal(srv.ID, id)
	if got := eventTypes(evs, "alice@example.net"); fmt.Sprint(got) != "[Transient Delivered]" {
		t.Fatalf("events %v, want [Transient Delivered]", got)
	}
	if d := evs[0].Details.DeliveryMessage; d != "450 4.2.0 Greylisted, come back later" {
		t.Errorf("Transient's DeliveryMessage %q", d)
	}
	if len(p.Messages()) != 1 {
		t.Errorf("%d messages delivered, want 1", len(p.Messages()))
	}
	// The session stayed open after the 450 (RSET, since MAIL had been
	// accepted) and the retry, within the reuse timeout, took it up.
	if c := p.Connections(); c != 1 || !strings.Contains(p.Transcript(), "RSET") {
		t.Errorf("%d connections, want 1 kept open with RSET between the attempts:\n%s", c, p.Transcript())
	}
}

// A mail exchanger that refuses connections defers the message until it
// comes back.
func TestE2EConnectionRefusedThenBack(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	e.Route("example.net", stack.Loopbacks[2]) // nothing listens there yet
	_, stop := e.StartRelay(e.RelayConfig())
	defer stop()

	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Refused"))
	stack.WaitFor(t, "a Transient event", func() bool { return len(e.Events(srv.ID, id)) > 0 })
	if ev := e.Events(srv.ID, id)[0]; ev.Type != store.EventTransient || !strings.Contains(ev.Details.DeliveryMessage, "refused") {
		t.Fatalf("first event %+v, want Transient for the refused connection", ev)
	}
	p := e.Peer(stack.Loopbacks[2], smtptest.Options{})
	evs := e.WaitFinal(srv.ID, id)
	got := eventTypes(evs, "alice@example.net")
	if got[len(got)-1] != store.EventDelivered || len(got) < 2 {
		t.Fatalf("events %v, want Transient... then Delivered", got)
	}
	for _, typ := range got[:len(got)-1] {
		if typ != store.EventTransient {
			t.Fatalf("events %v, want Transient... then Delivered", got)
		}
	}
	if len(p.Messages()) != 1 {
		t.Errorf("%d messages delivered, want 1", len(p.Messages()))
	}
	stop()
}

// A mail exchanger that stops in the middle of DATA defers the message;
// once mail goes to a working server it is delivered. A server that never
// got the whole message never delivers it: no duplicate. A server that
// got the whole message but whose reply never came (it answered after
// the data timeout) does deliver it, and the retry delivers it a second
// time: exactly one duplicate, the unavoidable one of RFC 1047, since a
// sender cannot tell "not received" from "received, reply lost".
func TestE2EStallInData(t *testing.T) {
	t.Run("stall before the end", func(t *testing.T) {
		e := newE2E(t)
		srv, token := e.LiveServer("production")
		e.SendingDomain(srv.AccountID, "example.com")
		stalling := e.Peer(stack.Loopbacks[3], smtptest.Options{InData: smtptest.Stall})
		working := e.Peer(stack.Loopbacks[4], smtptest.Options{})
		e.Route("example.net", stack.Loopbacks[3])
		cfg := e.RelayConfig()
		cfg.MX = e.MXDeliverer(func(c *relay.MXConfig) { c.DataTimeout = 300 * time.Millisecond })
		e.StartRelay(cfg)

		id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Stall"))
		stack.WaitFor(t, "a Transient event", func() bool { return len(e.Events(srv.ID, id)) > 0 })
		if ev := e.Events(srv.ID, id)[0]; ev.Type != store.EventTransient || ev.Details.DestinationServer != "mx.example.net" {
			t.Fatalf("first event %+v, want Transient at mx.example.net", ev)
		}
		// The server recovers: its name now leads to a working one.
		e.DNS.SetA("mx.example.net", stack.Loopbacks[4])
		evs := e.WaitFinal(srv.ID, id)
		if got := eventTypes(evs, "alice@example.net"); got[len(got)-1] != store.EventDelivered {
			t.Fatalf("events %v, want Delivered last", got)
		}
		if n, s := len(working.Messages()), len(stalling.Messages()); n != 1 || s != 0 {
			t.Errorf("the working server got %d messages and the stalling one %d, want 1 and 0", n, s)
		}
	})
	t.Run("reply after the timeout", func(t *testing.T) {
		e := newE2E(t)
		srv, token := e.LiveServer("production")
		e.SendingDomain(srv.AccountID, "example.com")
		var datas atomic.Int32
		p := e.Peer(stack.Loopbacks[0], smtptest.Options{Data: func([]byte) error {
			if datas.Add(1) == 1 {
				time.Sleep(time.Second) // past the client's data timeout; then takes the message
			}
			return nil
		}})
		e.Route("example.net", stack.Loopbacks[0])
		cfg := e.RelayConfig()
		cfg.MX = e.MXDeliverer(func(c *relay.MXConfig) { c.DataTimeout = 200 * time.Millisecond })
		e.StartRelay(cfg)

		id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Late reply"))
		evs := e.WaitFinal(srv.ID, id)
		if got := eventTypes(evs, "alice@example.net"); fmt.Sprint(got) != "[Transient Delivered]" {
			t.Fatalf("events %v, want [Transient Delivered]", got)
		}
		stack.WaitFor(t, "the late message to be recorded", func() bool { return len(p.Messages()) == 2 })
		msgs := p.Messages()
		if !bytes.Equal(msgs[0].Data, msgs[1].Data) {
			t.Error("the duplicate differs from the first copy: the retry should send the same signed bytes")
		}
	})
}

// A 550 5.1.1 bounces the recipient as a HardBounce and makes it inactive
// for that server only; the other recipient of the message is delivered.
func TestE2EHardBounce(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	other, otherToken := e.LiveServer("staging")
	e.SendingDomain(srv.AccountID, "example.com")
	var peerRcpts atomic.Int32
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "nobody@") && peerRcpts.Add(1) == 1 {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.net>: no such user"}
		}
		return nil
	}})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	id := e.Send(token, "app@example.com", []string{"nobody@example.net", "alice@example.net"}, testBody("app@example.com", "nobody@example.net", "Bounce"))
	evs := e.WaitFinal(srv.ID, id)
	if got := eventTypes(evs, "alice@example.net"); fmt.Sprint(got) != "[Delivered]" {
		t.Errorf("alice: events %v", got)
	}
	if got := eventTypes(evs, "nobody@example.net"); fmt.Sprint(got) != "[Bounced]" {
		t.Fatalf("nobody: events %v, want [Bounced]", got)
	}
	for _, ev := range evs {
		if ev.Recipient != "nobody@example.net" {
			continue
		}
		if d := ev.Details; d.BounceType != "HardBounce" || d.BounceTypeCode != 1 || d.DeliveryMessage != "550 5.1.1 <nobody@example.net>: no such user" {
			t.Errorf("bounce details %+v", d)
		}
	}
	if msg, _ := e.Store.Message(srv.ID, id); msg.Status != store.StatusPartial {
		t.Errorf("status %q, want %q", msg.Status, store.StatusPartial)
	}
	sup, ok, err := e.Store.Suppressed(srv.ID, "Nobody@example.net")
	if err != nil || !ok || sup.Reason != "HardBounce" || sup.MessageID != id {
		t.Errorf("suppression on the sending server: %+v %v %v", sup, ok, err)
	}
	if _, ok, err := e.Store.Suppressed(other.ID, "nobody@example.net"); ok || err != nil {
		t.Errorf("suppressed on another server too (%v, %v)", ok, err)
	}
	if msgs := p.Messages(); len(msgs) != 1 || fmt.Sprint(msgs[0].To) != "[alice@example.net]" {
		t.Errorf("peer got %+v", msgs)
	}

	// The intake refuses the address on that server, and only there.
	c, err := stack.DialAuth(e.SMTP, token)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("app@example.com", nil); err != nil {
		t.Fatal(err)
	}
	var smtpErr *smtp.SMTPError
	if err := c.Rcpt("nobody@example.net", nil); !errors.As(err, &smtpErr) || smtpErr.Code != 550 || smtpErr.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("RCPT of the bounced address on its server: %v, want 550 5.1.1", err)
	}
	if _, err := stack.Submit(mustDial(t, e.SMTP, otherToken), "app@example.com", []string{"nobody@example.net"}, testBody("app@example.com", "nobody@example.net", "Other server")); err != nil {
		t.Errorf("the same address on another server: %v, want accepted", err)
	}
}

func mustDial(t *testing.T, addr, token string) *smtp.Client {
	t.Helper()
	c, err := stack.DialAuth(addr, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A null MX bounces at once, without a retry; a message past its
// lifetime whose attempt is deferred bounces as expired.
func TestE2ENullMXAndExpiry(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	e.DNS.SetNullMX("nomail.example")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	id := e.Send(token, "app@example.com", []string{"x@nomail.example"}, testBody("app@example.com", "x@nomail.example", "Null MX"))
	evs := e.WaitFinal(srv.ID, id)
	if len(evs) != 1 || evs[0].Type != store.EventBounced || evs[0].Details.BounceType != "DnsError" || evs[0].Details.BounceTypeCode != 256 {
		t.Errorf("null MX: events %+v, want one Bounced DnsError", evs)
	}
	if _, ok, _ := e.Store.Suppressed(srv.ID, "x@nomail.example"); ok {
		t.Error("a DnsError made the recipient inactive")
	}

	// A message received 49 hours ago (the process was down, say).
	old := &store.Message{
		MessageID: store.NewMessageID(), ServerID: srv.ID, EnvelopeFrom: "app@example.com",
		From: "app@example.com", Recipients: []string{"alice@example.net"}, MessageStream: "outbound",
		ReceivedAt: time.Now().Add(-49 * time.Hour), Status: store.StatusQueued,
	}
	raw := "From: app@example.com\r\nTo: alice@example.net\r\nSubject: old\r\n\r\nHi\r\n"
	if err := storetest.Enqueue(e.Store, old, []byte(raw)); err != nil {
		t.Fatal(err)
	}
	e.Notify()
	evs = e.WaitFinal(srv.ID, old.MessageID)
	if len(evs) != 1 || evs[0].Type != store.EventBounced || evs[0].Details.BounceType != "Transient" || evs[0].Details.BounceTypeCode != 2 {
		t.Fatalf("expired: events %+v, want one Bounced of type Transient", evs)
	}
	if d := evs[0].Details; !strings.Contains(d.DeliveryMessage, "451 4.3.0 try later") || !strings.Contains(d.Summary, "48h") {
		t.Errorf("expired: details %+v", d)
	}
	if _, ok, _ := e.Store.Suppressed(srv.ID, "alice@example.net"); ok {
		t.Error("an expiry made the recipient inactive")
	}
	if len(p.Messages()) != 0 {
		t.Error("the peer took a message")
	}
}

// A deferred recipient is retried until the lifetime ends, then bounces;
// the retries follow the backoff (here 50ms doubling, lifetime 1s).
func TestE2ERetriesUntilExpiry(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	e.Peer(stack.Loopbacks[0], smtptest.Options{Rcpt: func(string) error {
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too busy"}
	}})
	e.Route("example.net", stack.Loopbacks[0])
	cfg := e.RelayConfig()
	cfg.MaxLifetime = time.Second
	e.StartRelay(cfg)

	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Expiry"))
	evs := e.WaitFinal(srv.ID, id)
	got := eventTypes(evs, "alice@example.net")
	// Attempts at about 0, 50, 150, 350, 750ms and the last at 1s.
	if len(got) < 3 || len(got) > 8 || got[len(got)-1] != store.EventBounced {
		t.Fatalf("events %v, want a few Transient then Bounced", got)
	}
	if last := evs[len(evs)-1]; last.Details.BounceType != "Transient" || last.ReceivedAt.Sub(evs[0].ReceivedAt) < 900*time.Millisecond {
		t.Errorf("last event %+v after %v", last, last.ReceivedAt.Sub(evs[0].ReceivedAt))
	}
}

// A smarthost with required STARTTLS and AUTH PLAIN takes every message;
// with SmarthostDomains it takes only those domains.
func TestE2ESmarthost(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	tlsConfig, roots := smtptest.Certificate(t, "127.0.0.1")
	upstream := smtptest.New(t, smtptest.Options{TLS: tlsConfig, Auth: &smtptest.Credentials{Username: "relay-user", Password: "s3cret"}})
	smarthost, err := relay.NewSmarthost(relay.SmarthostConfig{
		ClientConfig: relay.ClientConfig{Hostname: "relay.postern.test"},
		Addr:         upstream.Addr(), Username: "relay-user", Password: "s3cret", RootCAs: roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	mxPeer := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])

	t.Run("everything", func(t *testing.T) {
		cfg := e.RelayConfig()
		cfg.Smarthost = smarthost
		_, stop := e.StartRelay(cfg)
		defer stop()
		rcpts := []string{"alice@example.net", "bob@example.org"} // example.org has no DNS at all
		id := e.Send(token, "app@example.com", rcpts, testBody("app@example.com", "alice@example.net", "Smarthost"))
		evs := e.WaitFinal(srv.ID, id)
		for _, ev := range evs {
			if ev.Type != store.EventDelivered || ev.Details.DestinationServer != "127.0.0.1" || ev.Details.TLS == "" {
				t.Errorf("event %+v, want Delivered through the smarthost with TLS", ev)
			}
		}
		msgs := upstream.Messages()
		if len(msgs) != 1 || fmt.Sprint(msgs[0].To) != fmt.Sprint(rcpts) || msgs[0].AuthUser != "relay-user" || msgs[0].TLSVersion == 0 {
			t.Fatalf("upstream got %+v, want one message to both, authenticated, over TLS", msgs)
		}
		if len(mxPeer.Messages()) != 0 {
			t.Error("the MX got a message")
		}
	})
	t.Run("chosen domains", func(t *testing.T) {
		cfg := e.RelayConfig()
		cfg.Smarthost, cfg.SmarthostDomains = smarthost, []string{"Example.ORG"}
		_, stop := e.StartRelay(cfg)
		defer stop()
		id := e.Send(token, "app@example.com", []string{"alice@example.net", "bob@example.org"}, testBody("app@example.com", "alice@example.net", "Some via smarthost"))
		evs := e.WaitFinal(srv.ID, id)
		for _, ev := range evs {
			want := map[string]string{"alice@example.net": "mx.example.net", "bob@example.org": "127.0.0.1"}[ev.Recipient]
			if ev.Type != store.EventDelivered || ev.Details.DestinationServer != want {
				t.Errorf("event %+v, want Delivered at %s", ev, want)
			}
		}
		if len(upstream.Messages()) != 2 || len(mxPeer.Messages()) != 1 {
			t.Errorf("upstream has %d messages (want 2 in all), MX %d (want 1)", len(upstream.Messages()), len(mxPeer.Messages()))
		}
	})
}

// A Sandbox server's mail is recorded as delivered and sent nowhere.
func TestE2ESandbox(t *testing.T) {
	e := newE2E(t)
	e.SendingDomain(e.Inst.AccountID, "example.com")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	id := e.Send(e.Inst.ServerToken, "app@example.com", []string{"alice@example.net", "bob@example.net"}, testBody("app@example.com", "alice@example.net", "Sandbox"))
	evs := e.WaitFinal(e.Inst.ServerID, id)
	if len(evs) != 2 {
		t.Fatalf("events %+v, want two", evs)
	}
	for _, ev := range evs {
		if ev.Type != store.EventDelivered || !strings.Contains(ev.Details.DeliveryMessage, "Sandbox") {
			t.Errorf("event %+v", ev)
		}
	}
	if msg, _ := e.Store.Message(e.Inst.ServerID, id); msg.Status != store.StatusSent {
		t.Errorf("status %q", msg.Status)
	}
	if p.Connections() != 0 {
		t.Errorf("the peer had %d connections", p.Connections())
	}
}

// A message whose From domain has no key on the account goes unsigned,
// and the events say so; another account's key is not used.
func TestE2EUnsigned(t *testing.T) {
	e := newE2E(t)
	srv, _ := e.LiveServer("production")
	otherAccount, err := e.Store.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.SendingDomain(otherAccount.ID, "theirs.example")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	var ids []string
	for _, from := range []string{"app@theirs.example", "app@nowhere.example"} {
		m := &store.Message{MessageID: store.NewMessageID(), ServerID: srv.ID, EnvelopeFrom: from, Recipients: []string{"alice@example.net"},
			MessageStream: "outbound", ReceivedAt: time.Now(), Status: store.StatusQueued}
		if err := storetest.Enqueue(e.Store, m, []byte("From: "+from+"\r\nTo: alice@example.net\r\nSubject: unsigned\r\n\r\nHi\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	e.Notify()
	for _, id := range ids {
		evs := e.WaitFinal(srv.ID, id)
		if len(evs) != 1 || evs[0].Type != store.EventDelivered || !strings.HasPrefix(evs[0].Details.Signed, "unsigned: the domain ") {
			t.Errorf("events %+v, want Delivered, unsigned", evs)
		}
	}
	for _, m := range p.Messages() {
		if bytes.Contains(m.Data, []byte("DKIM-Signature")) {
			t.Errorf("a message arrived signed:\n%s", header(m.Data))
		}
	}
}

// One server's backlog to a slow destination does not hold back another
// server's message to the same destination: the scheduler rotates across
// servers and caps each one's share of the workers.
func TestE2EFairness(t *testing.T) {
	const backlog = 5000
	e := newE2E(t)
	a, _ := e.LiveServer("bulk")
	b, tokenB := e.LiveServer("transactional")
	e.SendingDomain(a.AccountID, "example.com")
	var deliveredA, aWhenB atomic.Int64
	aWhenB.Store(-1)
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{Data: func(data []byte) error {
		time.Sleep(20 * time.Millisecond) // a slow server
		if bytes.Contains(data, []byte("Subject: from B")) {
			aWhenB.Store(deliveredA.Load())
		} else {
			deliveredA.Add(1)
		}
		return nil
	}})
	e.Route("example.net", stack.Loopbacks[0])

	// A's backlog, straight into the store (32 writers share commits).
	raw := []byte("From: bulk@example.com\r\nTo: someone@example.net\r\nSubject: from A\r\n\r\n" + strings.Repeat("x", 1000) + "\r\n")
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= backlog {
				m := &store.Message{MessageID: store.NewMessageID(), ServerID: a.ID, EnvelopeFrom: "bulk@example.com",
					Recipients: []string{"someone@example.net"}, MessageStream: "outbound", ReceivedAt: time.Now(), Status: store.StatusQueued}
				if err := storetest.Enqueue(e.Store, m, raw); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	cfg := e.RelayConfig()
	cfg.Workers, cfg.PerServer, cfg.PerDomain = 8, 4, 4
	_, stop := e.StartRelay(cfg)
	defer stop()
	stack.WaitFor(t, "A's delivery to be under way", func() bool { return deliveredA.Load() >= 20 })

	id := e.Send(tokenB, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "from B"))
	evs := e.WaitFinal(b.ID, id)
	if len(evs) != 1 || evs[0].Type != store.EventDelivered {
		t.Fatalf("B's events %+v", evs)
	}
	// When B's message arrived, A had delivered a few more of its
	// messages: those already in flight, and its turns in the rotation.
	if n := aWhenB.Load(); n < 0 || n > 100 {
		t.Errorf("A had delivered %d of its %d messages when B's one arrived; want B's within a few of A's", n, backlog)
	}
	queued, err := e.Store.Queue(backlog)
	if err != nil {
		t.Fatal(err)
	}
	if len(queued) < backlog-500 {
		t.Errorf("only %d of A's messages still queued: the test did not measure against a backlog", len(queued))
	}
	stop()
	t.Logf("A delivered %d before B's message; %d peer messages in all", aWhenB.Load(), len(p.Messages()))
}

// failingStore fails every RecordAttempt, like a disk that broke while
// the relay delivered: each claimed entry keeps its lease.
type failingStore struct {
	relay.Store
	recorded atomic.Int32
}

func (s *failingStore) RecordAttempt(store.Attempt) error {
	s.recorded.Add(1)
	return errors.New("injected: disk full")
}

// After a stop with messages claimed, a new relay on the same store
// delivers every accepted message; the store stays consistent.
func TestE2ECrash(t *testing.T) {
	t.Run("stopped mid-delivery", func(t *testing.T) {
		e := newE2E(t)
		srv, token := e.LiveServer("production")
		e.SendingDomain(srv.AccountID, "example.com")
		release := make(chan struct{})
		var inData atomic.Int32
		p := e.Peer(stack.Loopbacks[0], smtptest.Options{Data: func([]byte) error {
			inData.Add(1)
			<-release // hold every delivery until the relay has stopped
			return nil
		}})
		e.Route("example.net", stack.Loopbacks[0])

		var ids []string
		for i := range 20 {
			ids = append(ids, e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", fmt.Sprint("crash ", i))))
		}
		cfg := e.RelayConfig()
		cfg.Workers, cfg.DrainTimeout = 4, 100*time.Millisecond
		_, stop := e.StartRelay(cfg)
		stack.WaitFor(t, "deliveries in DATA", func() bool { return inData.Load() == 4 })
		stop() // cancels the four deliveries in flight after 100ms
		close(release)

		e.StartRelay(e.RelayConfig())
		for _, id := range ids {
			evs := e.WaitFinal(srv.ID, id)
			if got := eventTypes(evs, "alice@example.net"); got[len(got)-1] != store.EventDelivered {
				t.Errorf("%s: events %v", id, got)
			}
		}
		if err := e.Store.Check(); err != nil {
			t.Error(err)
		}
		// The four in flight may have reached the peer before the stop
		// (it takes them once released): at most four duplicates.
		if n := len(p.Messages()); n < 20 || n > 24 {
			t.Errorf("peer got %d messages, want 20 to 24", n)
		}
	})
	t.Run("leases left behind", func(t *testing.T) {
		e := newE2E(t)
		srv, token := e.LiveServer("production")
		e.SendingDomain(srv.AccountID, "example.com")
		p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
		e.Route("example.net", stack.Loopbacks[0])
		var ids []string
		for i := range 10 {
			ids = append(ids, e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", fmt.Sprint("lease ", i))))
		}
		broken := &failingStore{Store: e.Store}
		cfg := e.RelayConfig()
		cfg.Store = broken
		cfg.Lease = time.Hour // nothing comes back during this test but by ReleaseLeases
		_, stop := e.StartRelay(cfg)
		stack.WaitFor(t, "every attempt to fail to be recorded", func() bool { return broken.recorded.Load() == 10 })
		stop()
		queued, err := e.Store.Queue(100)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range queued {
			if !q.Leased {
				t.Errorf("entry %s not leased", q.MessageID)
			}
		}

		e.StartRelay(e.RelayConfig())
		for _, id := range ids {
			if got := eventTypes(e.WaitFinal(srv.ID, id), "alice@example.net"); fmt.Sprint(got) != "[Delivered]" {
				t.Errorf("%s: events %v", id, got)
			}
		}
		if err := e.Store.Check(); err != nil {
			t.Error(err)
		}
		// Delivered by the first relay, unrecorded, so delivered again.
		if n := len(p.Messages()); n != 20 {
			t.Errorf("peer got %d messages, want 20 (each twice)", n)
		}
	})
}

// SMTP smuggling downstream: a body with "\n.\n" or "\r.\r\n" would end
// the message early at a mail exchanger that takes a bare LF or a bare CR
// for a line end, and what follows would be read as commands. The intake
// stores such a body with CRLF line endings, so the relay's dot-stuffing
// applies: the exchanger reads "\r\n..\r\n" on the wire, and gets one
// message whose text keeps "\r\n.\r\nsmuggled".
func TestE2EBareLineEndsDotStuffed(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	// Sent as raw bytes: go-smtp's client (e.send) would turn the bare
	// LF into CRLF itself, so the intake would never see it.
	id := sendRaw(t, e.SMTP, token, "app@example.com", "alice@example.net",
		"From: App <app@example.com>\r\nTo: alice@example.net\r\nSubject: Smuggling\r\n\r\n"+
			"Hello.\n.\nsmuggled by LF\r.\r\nsmuggled by CR\r\n")
	evs := e.WaitFinal(srv.ID, id)
	if got := eventTypes(evs, "alice@example.net"); fmt.Sprint(got) != "[Delivered]" {
		t.Fatalf("events %v, want [Delivered]", got)
	}
	msgs := p.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the exchanger received %d messages, want 1", len(msgs))
	}
	_, body, _ := strings.Cut(string(msgs[0].Data), "\r\n\r\n")
	if want := "Hello.\r\n.\r\nsmuggled by LF\r\n.\r\nsmuggled by CR\r\n"; body != want {
		t.Errorf("body received %q, want %q", body, want)
	}
	// The relay signed the bytes it sent: the signatures verify.
	e.checkSignatures(t, msgs[0].Data)
	wire := p.Transcript()
	for _, s := range []string{"\r\n..\r\nsmuggled by LF", "\r\n..\r\nsmuggled by CR"} {
		if !strings.Contains(wire, s) {
			t.Errorf("%q is not on the wire:\n%q", s, wire)
		}
	}
	if strings.Contains(wire, "\r.\r") || strings.Contains(wire, "\n.\n") {
		t.Errorf("a dot line with a bare line end is on the wire:\n%q", wire)
	}
}

// checkSignatures verifies the two DKIM signatures of a message as
// delivered, looking the keys up in the test's DNS.
func (e *e2e) checkSignatures(t *testing.T, data []byte) {
	t.Helper()
	for _, v := range dkimtest.Verify(t, data, func(name string) ([]string, error) { return e.Resolver.LookupTXT(context.Background(), name) }) {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}
}

// sendRaw submits a message whose data goes as written (dot-stuffing
// aside), and returns its MessageID.
func sendRaw(t *testing.T, addr, token, from, to, data string) string {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expect := func(code int, format string, args ...any) string {
		t.Helper()
		if format != "" {
			if err := c.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			t.Fatalf("%q: %v", fmt.Sprintf(format, args...), err)
		}
		return msg
	}
	expect(220, "")
	expect(250, "EHLO client.test")
	expect(235, "AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+token+"\x00"+token)))
	expect(250, "MAIL FROM:<%s>", from)
	expect(250, "RCPT TO:<%s>", to)
	expect(354, "DATA")
	stuffed := strings.ReplaceAll(data, "\r\n.", "\r\n..")
	if _, err := io.WriteString(c.W, stuffed+".\r\n"); err != nil {
		t.Fatal(err)
	}
	c.W.Flush()
	msg := expect(250, "")
	const prefix = "2.0.0 OK: queued as "
	if !strings.HasPrefix(msg, prefix) {
		t.Fatalf("DATA: %q", msg)
	}
	expect(221, "QUIT")
	return strings.TrimPrefix(msg, prefix)
}

// A message with lines over RFC 5321's 998 octets (accepted up to
// max-line-length) leaves with every line within the limit: the parts
// that had such lines re-encoded as quoted-printable, the others as they
// were, both signatures verifying, and the decoded text unchanged.
func TestE2ELongLinesReencoded(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{})
	e.Route("example.net", stack.Loopbacks[0])
	e.StartRelay(e.RelayConfig())

	html := "<html><body><p>" + strings.Repeat("Déjà vu, ", 300) + "</p></body></html>"
	text := "Short lines\r\nstay as they are.\r\n"
	id := sendRaw(t, e.SMTP, token, "app@example.com", "alice@example.net",
		"From: App <app@example.com>\r\nTo: alice@example.net\r\nSubject: Long\r\nMIME-Version: 1.0\r\n"+
			"Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"+
			"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+text+
			"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"+html+"\r\n"+
			"--b1--\r\n")
	evs := e.WaitFinal(srv.ID, id)
	if got := eventTypes(evs, "alice@example.net"); fmt.Sprint(got) != "[Delivered]" {
		t.Fatalf("events %v, want [Delivered]", got)
	}
	msgs := p.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the exchanger received %d messages, want 1", len(msgs))
	}
	data := msgs[0].Data
	for i, line := range strings.Split(string(data), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("line %d is %d octets long", i+1, len(line))
		}
	}
	e.checkSignatures(t, data)
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	mr := multipart.NewReader(m.Body, params["boundary"])
	var parts []string
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(part)
		if part.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
			body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
		}
		parts = append(parts, part.Header.Get("Content-Transfer-Encoding")+"|"+string(body))
	}
	if want := []string{"|" + strings.TrimSuffix(text, "\r\n"), "quoted-printable|" + html}; !slices.Equal(parts, want) {
		t.Errorf("parts received:\n%.200q\nwant:\n%.200q", parts, want)
	}
}
