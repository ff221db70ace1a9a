package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/dkimtest"

	"github.com/postern/postern/internal/dkim"

	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
)

const ehloName = "postern.test"

var (
	loopback1 = netip.MustParseAddr("127.0.0.1")
	loopback2 = netip.MustParseAddr("127.0.0.2")
	loopback3 = netip.MustParseAddr("127.0.0.3")
)

var testMsg = relay.Message{Raw: []byte("From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\n.a line with a leading dot\r\nbye\r\n")}

// world is a destination domain example.net served by a DNS server and
// SMTP peers on loopback.
type world struct {
	dns *dnstest.Server
}

func newWorld(t *testing.T) world {
	return world{dns: dnstest.New(t)}
}

// mx points example.net's MX records at hosts mx<i>.example.net with the
// given addresses, preferences rising in order.
func (w world) mx(addrs ...netip.Addr) {
	var mxs []dnstest.MX
	for i, a := range addrs {
		host := fmt.Sprintf("mx%d.example.net", i+1)
		mxs = append(mxs, dnstest.MX{Host: host, Pref: uint16(10 * (i + 1))})
		w.dns.SetA(host, a)
	}
	w.dns.SetMX("example.net", mxs)
}

func (w world) deliverer(t *testing.T, port int, adjust ...func(*relay.MXConfig)) *relay.MXDeliverer {
	t.Helper()
	cfg := relay.MXConfig{
		ClientConfig: relay.ClientConfig{Hostname: ehloName},
		Resolver:     relay.NewResolver(w.dns.Addr()),
		Port:         port,
		AllowPrivate: true, // the test peers are on loopback
	}
	for _, f := range adjust {
		f(&cfg)
	}
	d, err := relay.NewMXDeliverer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// peerAt starts a peer at addr on the port of an existing one, so that
// several mail exchangers share the one MX port, as on the Internet.
func peerAt(t *testing.T, addr netip.Addr, port int, opts smtptest.Options) *smtptest.Peer {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		t.Skipf("cannot listen on %v (only Linux routes all of 127/8 to loopback): %v", addr, err)
	}
	l.Close()
	opts.Addr = l.Addr().String()
	return smtptest.New(t, opts)
}

func envelope(to ...string) relay.Envelope {
	return relay.Envelope{From: "bounces@example.com", To: to}
}

func smtpErr(code int, enhanced smtp.EnhancedCode, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: text}
}

func checkOutcomes(t *testing.T, res relay.Result, want ...relay.Outcome) {
	t.Helper()
	if len(res.Recipients) != len(want) {
		t.Fatalf("%d recipient results, want %d: %+v", len(res.Recipients), len(want), res.Recipients)
	}
	for i, r := range res.Recipients {
		if r.Outcome != want[i] {
			t.Errorf("%s: %v (%v), want %v", r.Address, r.Outcome, r.Reply, want[i])
		}
	}
}

func TestDeliverSignedMessageToTwoRecipients(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(loopback1)
	d := w.deliverer(t, peer.Port())

	k := dkimtest.Keys(t)
	signer, err := dkim.NewSigner(k.Domain, k.List())
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte(testMessage)
	sig, err := signer.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	msg := relay.Message{Prefix: sig, Raw: raw}

	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net", "carol@example.net"), msg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered, relay.Delivered)
	for _, r := range res.Recipients {
		if r.Reply.Code != 250 || r.Reply.Enhanced != (relay.EnhancedCode{2, 0, 0}) {
			t.Errorf("%s: reply %v", r.Address, r.Reply)
		}
	}
	if res.Host != "mx1.example.net" || res.IP != loopback1 || res.TLS.Version != 0 {
		t.Errorf("result host %q, IP %v, TLS %x", res.Host, res.IP, res.TLS.Version)
	}

	got := peer.Messages()
	if len(got) != 1 {
		t.Fatalf("peer got %d messages, want 1", len(got))
	}
	m := got[0]
	if m.Helo != ehloName || m.From != "bounces@example.com" || strings.Join(m.To, ",") != "bob@example.net,carol@example.net" {
		t.Errorf("envelope: EHLO %q, from %q, to %v", m.Helo, m.From, m.To)
	}
	if want := append(bytes.Clone(sig), raw...); !bytes.Equal(m.Data, want) {
		t.Errorf("peer got\n%q\nwant\n%q", m.Data, want)
	}
	if m.Mail.Size != int64(msg.Size()) {
		t.Errorf("MAIL SIZE=%d, want %d", m.Mail.Size, msg.Size())
	}
	// What arrived still verifies.
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(m.Data), &msgdkim.VerifyOptions{LookupTXT: dkimtest.Records(k)})
	if err != nil || len(vs) != 2 || vs[0].Err != nil || vs[1].Err != nil {
		t.Errorf("DKIM on arrival: %v, %+v", err, vs)
	}

	var asked []string
	for _, q := range w.dns.Queries() {
		asked = append(asked, q.Type+" "+q.Name)
	}
	if s := strings.Join(asked, ","); !strings.HasPrefix(s, "MX example.net,") || !strings.Contains(s, "A mx1.example.net") {
		t.Errorf("DNS queries: %s", s)
	}
}

func TestDeliverRecipientsRefusedOneByOne(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{
		Rcpt: func(to string) error {
			switch {
			case strings.HasPrefix(to, "nobody@"):
				return smtpErr(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
			case strings.HasPrefix(to, "busy@"):
				return smtpErr(450, smtp.EnhancedCode{4, 2, 1}, "mailbox busy, try later")
			}
			return nil
		},
	})
	w.mx(loopback1)
	d := w.deliverer(t, peer.Port())

	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("nobody@example.net", "bob@example.net", "busy@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Bounced, relay.Delivered, relay.Transient)
	if r := res.Recipients[0]; r.Bounce != relay.BounceHard || r.Reply.String() != "550 5.1.1 no such user" {
		t.Errorf("refused recipient: %+v", r)
	}
	if r := res.Recipients[2]; r.Reply.String() != "450 4.2.1 mailbox busy, try later" {
		t.Errorf("deferred recipient: %+v", r)
	}
	m := peer.Messages()
	if len(m) != 1 || strings.Join(m[0].To, ",") != "bob@example.net" {
		t.Errorf("peer got %+v", m)
	}
}

func TestDeliverAllRecipientsRefusedSendsNoData(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{
		Rcpt: func(string) error { return smtpErr(450, smtp.EnhancedCode{4, 7, 1}, "greylisted") },
	})
	w.mx(loopback1)
	d := w.deliverer(t, peer.Port())

	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net", "carol@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Transient, relay.Transient)
	if tr := peer.Transcript(); strings.Contains(tr, "DATA") || !strings.Contains(tr, "QUIT") {
		t.Errorf("transcript:\n%s", tr)
	}
}

func TestDeliverRefusedAtMAILAndDATA(t *testing.T) {
	tests := []struct {
		name string
		opts smtptest.Options
		want relay.Classification
	}{
		{"MAIL", smtptest.Options{Mail: func(string) error { return smtpErr(550, smtp.EnhancedCode{5, 7, 1}, "sender blocked") }},
			relay.Classification{Outcome: relay.Bounced, Bounce: relay.BounceBlocked}},
		{"DATA", smtptest.Options{Data: func([]byte) error {
			return smtpErr(550, smtp.EnhancedCode{5, 7, 26}, "rejected by DMARC policy")
		}}, relay.Classification{Outcome: relay.Bounced, Bounce: relay.BounceDMARCPolicy}},
		{"DATA temporarily", smtptest.Options{Data: func([]byte) error { return smtpErr(451, smtp.EnhancedCode{4, 3, 0}, "try later") }},
			relay.Classification{Outcome: relay.Transient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			peer := smtptest.New(t, tt.opts)
			w.mx(loopback1)
			res, err := w.deliverer(t, peer.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net", "carol@example.net"), testMsg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res.Recipients {
				if r.Classification != tt.want {
					t.Errorf("%s: %+v (%v), want %+v", r.Address, r.Classification, r.Reply, tt.want)
				}
			}
		})
	}
}

func TestDeliverGreeting421TriesNextMX(t *testing.T) {
	w := newWorld(t)
	busy := smtptest.New(t, smtptest.Options{Greeting: smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "too busy, closing")})
	good := peerAt(t, loopback2, busy.Port(), smtptest.Options{})
	w.mx(loopback1, loopback2)

	res, err := w.deliverer(t, busy.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if busy.Connections() != 1 || len(good.Messages()) != 1 {
		t.Errorf("busy peer: %d connections; good peer: %d messages", busy.Connections(), len(good.Messages()))
	}
	if res.Host != "mx2.example.net" || res.IP != loopback2 {
		t.Errorf("delivered by %s [%v], want mx2.example.net [%v]", res.Host, res.IP, loopback2)
	}
}

func TestDeliverConnectionRefusedTriesNextMX(t *testing.T) {
	w := newWorld(t)
	good := peerAt(t, loopback2, 0, smtptest.Options{})
	// Nothing should listen on 127.0.0.3 at good's port; if something
	// does, the test says so rather than passing by accident.
	if c, err := net.Dial("tcp", netip.AddrPortFrom(loopback3, uint16(good.Port())).String()); err == nil {
		c.Close()
		t.Skip("something listens on 127.0.0.3 at the test port")
	}
	w.mx(loopback3, loopback2)

	res, err := w.deliverer(t, good.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if len(good.Messages()) != 1 || res.Host != "mx2.example.net" {
		t.Errorf("delivered by %q; peer has %d messages", res.Host, len(good.Messages()))
	}
}

func TestDeliverNoServerUsable(t *testing.T) {
	w := newWorld(t)
	busy := smtptest.New(t, smtptest.Options{Greeting: smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "too busy")})
	w.mx(loopback1, loopback3) // nothing on 127.0.0.3

	res, err := w.deliverer(t, busy.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	var hostErr *relay.HostError
	if !errors.As(err, &hostErr) {
		t.Fatalf("err = %v, want a HostError", err)
	}
	checkOutcomes(t, res, relay.Transient)
	text := res.Recipients[0].Reply.Text
	if !strings.Contains(text, "mx1.example.net") || !strings.Contains(text, "421") || !strings.Contains(text, "mx2.example.net") {
		t.Errorf("reply text %q does not tell what happened at each server", text)
	}
}

func TestDeliverDNSFailures(t *testing.T) {
	w := newWorld(t)
	w.dns.SetNullMX("nomail.example")
	w.dns.SetServFail("broken.example")
	w.dns.SetMX("ghosts.example", []dnstest.MX{{Host: "gone1.ghosts.example", Pref: 10}, {Host: "gone2.ghosts.example", Pref: 20}})
	d := w.deliverer(t, 2525)

	tests := []struct {
		domain string
		want   relay.Classification
	}{
		{"nomail.example", relay.Classification{Outcome: relay.Bounced, Bounce: relay.BounceDNSError}},
		{"nonexistent.example", relay.Classification{Outcome: relay.Bounced, Bounce: relay.BounceDNSError}},
		{"ghosts.example", relay.Classification{Outcome: relay.Bounced, Bounce: relay.BounceDNSError}},
		{"broken.example", relay.Classification{Outcome: relay.Transient}},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			res, err := d.DeliverDomain(testContext(t), tt.domain, envelope("a@"+tt.domain, "b@"+tt.domain), testMsg)
			if err == nil {
				t.Fatal("no error")
			}
			for _, r := range res.Recipients {
				if r.Classification != tt.want || r.Reply.Text == "" {
					t.Errorf("%s: %+v %q, want %+v", r.Address, r.Classification, r.Reply.Text, tt.want)
				}
			}
		})
	}
}

func TestDeliverUsesSTARTTLS(t *testing.T) {
	w := newWorld(t)
	cfg, _ := smtptest.Certificate(t, "mx1.example.net") // self-signed: not verified for MX delivery
	peer := smtptest.New(t, smtptest.Options{TLS: cfg})
	w.mx(loopback1)

	res, err := w.deliverer(t, peer.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if res.TLS.Version != tls.VersionTLS13 || res.TLSError != "" {
		t.Errorf("TLS version %s, TLS error %q", tls.VersionName(res.TLS.Version), res.TLSError)
	}
	m := peer.Messages()
	if len(m) != 1 || m[0].TLSVersion != tls.VersionTLS13 || m[0].Helo != ehloName {
		t.Fatalf("peer got %+v", m)
	}
	// Our name in EHLO both before and after STARTTLS, never "localhost".
	if n := strings.Count(peer.Transcript(), "EHLO "+ehloName+"\r\n"); n != 2 {
		t.Errorf("EHLO %s said %d times, want 2:\n%s", ehloName, n, peer.Transcript())
	}
}

func TestDeliverTLSHandshakeFailure(t *testing.T) {
	for _, fallback := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			w := newWorld(t)
			peer := smtptest.New(t, smtptest.Options{BrokenTLS: true})
			w.mx(loopback1)
			d := w.deliverer(t, peer.Port(), func(c *relay.MXConfig) { c.TLSFallback = fallback })

			res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
			if !fallback {
				var hostErr *relay.HostError
				if !errors.As(err, &hostErr) || !strings.Contains(err.Error(), "TLS") {
					t.Errorf("err = %v, want a HostError about TLS", err)
				}
				checkOutcomes(t, res, relay.Transient)
				if peer.Connections() != 1 || len(peer.Messages()) != 0 {
					t.Errorf("%d connections, %d messages; want 1, 0", peer.Connections(), len(peer.Messages()))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkOutcomes(t, res, relay.Delivered)
			if res.TLS.Version != 0 || !strings.Contains(res.TLSError, "TLS") {
				t.Errorf("TLS version %x, TLS error %q", res.TLS.Version, res.TLSError)
			}
			m := peer.Messages()
			if peer.Connections() != 2 || len(m) != 1 || m[0].TLSVersion != 0 {
				t.Errorf("%d connections, messages %+v; want 2 and one plaintext message", peer.Connections(), m)
			}
		})
	}
}

func TestDeliverStalledOrDroppedInDATA(t *testing.T) {
	for name, action := range map[string]smtptest.DataAction{"stall": smtptest.Stall, "hang up": smtptest.Hangup} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			peer := smtptest.New(t, smtptest.Options{InData: action})
			w.mx(loopback1)
			d := w.deliverer(t, peer.Port(), func(c *relay.MXConfig) { c.DataTimeout = 200 * time.Millisecond })

			res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net", "carol@example.net"), testMsg)
			if err != nil {
				t.Fatalf("err = %v; a transaction had begun, so no other host should be tried", err)
			}
			checkOutcomes(t, res, relay.Transient, relay.Transient)
			if r := res.Recipients[0].Reply; r.Code != 0 || !strings.Contains(r.Text, "mx1.example.net") {
				t.Errorf("reply %+v", r)
			}
			if len(peer.Messages()) != 0 {
				t.Error("the peer recorded a message")
			}
		})
	}
}

func TestDeliverCanceled(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{InData: smtptest.Stall})
	w.mx(loopback1)
	d := w.deliverer(t, peer.Port())

	ctx, cancel := context.WithCancel(testContext(t))
	peerStalls := make(chan struct{})
	go func() {
		// Cancel once the message is on its way.
		for ctx.Err() == nil && !strings.Contains(peer.Transcript(), "354") {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		close(peerStalls)
	}()
	res, _ := d.DeliverDomain(ctx, "example.net", envelope("bob@example.net"), testMsg)
	<-peerStalls
	checkOutcomes(t, res, relay.Transient)
	if r := res.Recipients[0].Reply.Text; !strings.Contains(r, "context canceled") {
		t.Errorf("reply text %q does not say the delivery was canceled", r)
	}
}

func TestDeliverSizeOverPeerLimit(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{MaxMessageBytes: 64})
	w.mx(loopback1)

	res, err := w.deliverer(t, peer.Port()).DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Bounced)
	r := res.Recipients[0]
	if r.Bounce != relay.BounceSoft || r.Reply.Code != 552 || !strings.Contains(r.Reply.Text, "64 bytes") {
		t.Errorf("result %+v", r)
	}
	if strings.Contains(peer.Transcript(), "MAIL FROM") {
		t.Error("MAIL was sent for a message over the announced SIZE")
	}
}

func TestDeliverSMTPUTF8(t *testing.T) {
	for _, offered := range []bool{true, false} {
		t.Run(fmt.Sprintf("offered=%v", offered), func(t *testing.T) {
			w := newWorld(t)
			peer := smtptest.New(t, smtptest.Options{SMTPUTF8: offered})
			w.mx(loopback1)
			env := relay.Envelope{From: "bounces@example.com", To: []string{"jürgen@example.net"}, SMTPUTF8: true}

			res, err := w.deliverer(t, peer.Port()).DeliverDomain(testContext(t), "example.net", env, testMsg)
			if err != nil {
				t.Fatal(err)
			}
			if offered {
				checkOutcomes(t, res, relay.Delivered)
				if m := peer.Messages(); len(m) != 1 || !m[0].Mail.UTF8 || m[0].To[0] != "jürgen@example.net" {
					t.Errorf("peer got %+v", m)
				}
				return
			}
			checkOutcomes(t, res, relay.Bounced)
			if r := res.Recipients[0].Reply; !strings.Contains(r.Text, "SMTPUTF8") {
				t.Errorf("reply %v does not say why", r)
			}
		})
	}
}

func TestDeliverThroughInjectedDialer(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(netip.MustParseAddr("192.0.2.25"))
	var dialed []string
	d := w.deliverer(t, 0, func(c *relay.MXConfig) {
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = append(dialed, network+" "+addr)
			var d net.Dialer
			return d.DialContext(ctx, network, peer.Addr())
		}
	})
	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if strings.Join(dialed, ",") != "tcp 192.0.2.25:25" {
		t.Errorf("dialed %v, want the MX address on port 25", dialed)
	}
}

func smarthost(t *testing.T, cfg relay.SmarthostConfig) *relay.Smarthost {
	t.Helper()
	cfg.Hostname = ehloName
	s, err := relay.NewSmarthost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSmarthost(t *testing.T) {
	serverTLS, roots := smtptest.Certificate(t, "127.0.0.1")
	creds := &smtptest.Credentials{Username: "relay-user", Password: "s3cret"}

	t.Run("AUTH over STARTTLS", func(t *testing.T) {
		peer := smtptest.New(t, smtptest.Options{TLS: serverTLS, Auth: creds})
		s := smarthost(t, relay.SmarthostConfig{Addr: peer.Addr(), Username: creds.Username, Password: creds.Password, RootCAs: roots})
		res, err := s.Deliver(testContext(t), envelope("bob@example.net", "carol@example.org"), testMsg)
		if err != nil {
			t.Fatal(err)
		}
		checkOutcomes(t, res, relay.Delivered, relay.Delivered)
		m := peer.Messages()
		if len(m) != 1 || m[0].AuthUser != creds.Username || m[0].TLSVersion == 0 || !bytes.Equal(m[0].Data, testMsg.Raw) {
			t.Errorf("peer got %+v", m)
		}
		if res.Host != "127.0.0.1" || res.TLS.Version == 0 {
			t.Errorf("result host %q, TLS %x", res.Host, res.TLS.Version)
		}
	})

	t.Run("implicit TLS", func(t *testing.T) {
		peer := smtptest.New(t, smtptest.Options{TLS: serverTLS, ImplicitTLS: true, Auth: creds})
		s := smarthost(t, relay.SmarthostConfig{Addr: peer.Addr(), ImplicitTLS: true, Username: creds.Username, Password: creds.Password, RootCAs: roots})
		res, err := s.Deliver(testContext(t), envelope("bob@example.net"), testMsg)
		if err != nil {
			t.Fatal(err)
		}
		checkOutcomes(t, res, relay.Delivered)
		if m := peer.Messages(); len(m) != 1 || m[0].TLSVersion == 0 {
			t.Errorf("peer got %+v", m)
		}
	})

	refusals := []struct {
		name string
		opts smtptest.Options
		cfg  relay.SmarthostConfig
		says string
	}{
		{"no TLS offered", smtptest.Options{}, relay.SmarthostConfig{Username: "u", Password: "p", RootCAs: roots}, "STARTTLS"},
		{"unverified certificate", smtptest.Options{TLS: serverTLS}, relay.SmarthostConfig{}, "certificate"},
		{"wrong password", smtptest.Options{TLS: serverTLS, Auth: creds}, relay.SmarthostConfig{Username: creds.Username, Password: "wrong", RootCAs: roots}, "535"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			peer := smtptest.New(t, tt.opts)
			tt.cfg.Addr = peer.Addr()
			res, err := smarthost(t, tt.cfg).Deliver(testContext(t), envelope("bob@example.net"), testMsg)
			var hostErr *relay.HostError
			if !errors.As(err, &hostErr) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("err = %v, want a HostError saying %q", err, tt.says)
			}
			checkOutcomes(t, res, relay.Transient)
			if len(peer.Messages()) != 0 {
				t.Error("the upstream got the message")
			}
			if tr := peer.Transcript(); strings.Contains(tr, "MAIL FROM") {
				t.Errorf("a transaction began:\n%s", tr)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	r := relay.NewResolver("")
	if _, err := relay.NewMXDeliverer(relay.MXConfig{Resolver: r}); err == nil {
		t.Error("MX delivery without an EHLO name")
	}
	if _, err := relay.NewMXDeliverer(relay.MXConfig{ClientConfig: relay.ClientConfig{Hostname: ehloName}}); err == nil {
		t.Error("MX delivery without a resolver")
	}
	if _, err := relay.NewSmarthost(relay.SmarthostConfig{ClientConfig: relay.ClientConfig{Hostname: ehloName}, Addr: "no-port"}); err == nil {
		t.Error("smarthost without a port")
	}
}

func TestDeliverTriesAtMostMaxAddresses(t *testing.T) {
	w := newWorld(t)
	busy := smtptest.New(t, smtptest.Options{Greeting: smtpErr(421, smtp.EnhancedCode{4, 3, 2}, "too busy")})
	good := peerAt(t, loopback2, busy.Port(), smtptest.Options{})
	w.mx(loopback1, loopback2)
	d := w.deliverer(t, busy.Port(), func(c *relay.MXConfig) { c.MaxAddresses = 1 })

	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
	if err == nil {
		t.Fatal("delivered past the address limit")
	}
	checkOutcomes(t, res, relay.Transient)
	if busy.Connections() != 1 || good.Connections() != 0 {
		t.Errorf("connections: %d to mx1, %d to mx2; want 1 and 0", busy.Connections(), good.Connections())
	}
}

// An address literal is delivered to that address without asking DNS.
func TestDeliverToAddressLiteral(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	d := w.deliverer(t, peer.Port())
	res, err := d.DeliverDomain(testContext(t), "[127.0.0.1]", envelope("bob@[127.0.0.1]"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if len(peer.Messages()) != 1 || res.IP != loopback1 {
		t.Errorf("peer has %d messages; delivered to %v", len(peer.Messages()), res.IP)
	}
	if q := w.dns.Queries(); len(q) != 0 {
		t.Errorf("DNS was asked %v", q)
	}
}

// Without AllowPrivate, a destination at a loopback, private or
// link-local address bounces, naming the address, and nothing connects:
// an address literal, and a domain whose MX resolves there alike.
func TestPrivateDestinationsRefused(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(loopback1)
	w.dns.SetMX("inside.example", []dnstest.MX{{Host: "mx.inside.example", Pref: 10}})
	w.dns.SetA("mx.inside.example", netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("10.0.0.25"))
	d := w.deliverer(t, peer.Port(), func(c *relay.MXConfig) { c.AllowPrivate = false })
	for _, tc := range []struct{ domain, rcpt, names string }{
		{"[127.0.0.1]", "bob@[127.0.0.1]", "127.0.0.1"},
		{"[IPv6:::1]", "bob@[IPv6:::1]", "::1"},
		{"example.net", "bob@example.net", "127.0.0.1"},
		{"inside.example", "bob@inside.example", "10.0.0.25, 169.254.169.254"}, // in the order DNS gave them
	} {
		res, err := d.DeliverDomain(testContext(t), tc.domain, envelope(tc.rcpt), testMsg)
		if err != nil {
			t.Errorf("%s: %v", tc.domain, err)
		}
		checkOutcomes(t, res, relay.Bounced)
		r := res.Recipients[0]
		if r.Classification.Bounce != relay.BounceBlocked || !strings.Contains(r.Reply.Text, "is at "+tc.names+", a loopback, private or link-local address") {
			t.Errorf("%s: %+v, want a Blocked bounce naming %s", tc.domain, r, tc.names)
		}
	}
	if n := peer.Connections(); n != 0 {
		t.Errorf("%d connections to the loopback peer, want none", n)
	}
}

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1234@example.com>\r\n" +
	"\r\n" +
	"Hello Bob,\r\n"
