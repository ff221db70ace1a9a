package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// e2e is a whole Postern on loopback: a store in a temporary directory,
// the real SMTP intake, a DNS server, the relay worker (started with
// startRelay), and the SMTP peers a test adds as mail exchangers, all on
// one MX port at different loopback addresses.
type e2e struct {
	t        testing.TB
	st       *bolt.Store
	inst     auth.Installation
	dns      *dnstest.Server
	resolver *relay.Resolver
	mxPort   int
	reserved map[netip.Addr]net.Listener // on mxPort, until a peer takes one
	intake   string                      // the SMTP intake's address

	mu     sync.Mutex
	worker *relay.Worker // the running relay, told of every accepted message
}

// notify wakes the running relay, as the intake does for each message
// it accepts.
func (e *e2e) notify() {
	e.mu.Lock()
	w := e.worker
	e.mu.Unlock()
	if w != nil {
		w.Notify()
	}
}

// loopbacks are the addresses peers listen on: Linux routes all of
// 127/8 to the loopback interface.
var loopbacks = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
	netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
}

func newE2E(t testing.TB, storeOptions ...bolt.Options) *e2e {
	t.Helper()
	var opts bolt.Options
	if len(storeOptions) > 0 {
		opts = storeOptions[0]
	}
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), opts)
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
	e := &e2e{t: t, st: st, inst: inst, dns: dnstest.New(t)}
	e.mxPort, e.reserved = reserveMXPort(t)
	e.resolver = relay.NewResolver(e.dns.Addr())

	srv, err := smtpd.New(smtpd.Config{
		Hostname:    "postern.test",
		Store:       st,
		Credentials: auth.NewAuthenticator(st),
		Accepted:    func(int64, string) { e.notify() },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.intake = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("intake shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("intake: %v", err)
		}
	})
	return e
}

// reserveMXPort listens on one port free on every address of loopbacks
// and keeps the listeners until the test's peers take them (see peer):
// a port closed and opened again later could be taken meanwhile by any
// test listening on port 0.
func reserveMXPort(t testing.TB) (int, map[netip.Addr]net.Listener) {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		reserved := map[netip.Addr]net.Listener{loopbacks[0]: l}
		for _, a := range loopbacks[1:] {
			o, err := net.Listen("tcp", netip.AddrPortFrom(a, uint16(port)).String())
			if err != nil {
				break
			}
			reserved[a] = o
		}
		if len(reserved) == len(loopbacks) {
			t.Cleanup(func() {
				for _, l := range reserved {
					l.Close()
				}
			})
			return port, reserved
		}
		for _, o := range reserved {
			o.Close()
		}
	}
	testutil.Unavailable(t, "no port free on 127.0.0.1 to 127.0.0.5 (only Linux routes all of 127/8 to loopback)")
	return 0, nil
}

// liveServer creates a Live server on the installation's account and
// returns it with its token.
func (e *e2e) liveServer(name string) (store.Server, string) {
	e.t.Helper()
	token := auth.NewToken()
	srv, err := e.st.CreateServer(store.Server{
		AccountID: e.inst.AccountID, Name: name, DeliveryType: store.DeliveryLive, SmtpApiActivated: true,
	}, auth.StoreToken(token), time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return srv, token
}

// sendingDomain gives the account a domain with new DKIM keys, and
// publishes their records.
func (e *e2e) sendingDomain(accountID int64, name string) dkim.Keys {
	e.t.Helper()
	keys, err := dkim.GenerateKeys(name)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, k := range keys.List() {
		e.dns.SetTXT(k.Host, k.TextValue)
	}
	if _, err := e.st.CreateDomain(store.Domain{AccountID: accountID, Name: name, Keys: keys.List()}, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	return keys
}

// route makes mx.<domain>, at addr, the mail exchanger of domain.
func (e *e2e) route(domain string, addr netip.Addr) {
	e.dns.SetMX(domain, []dnstest.MX{{Host: "mx." + domain, Pref: 10}})
	e.dns.SetA("mx."+domain, addr)
}

// peer starts a mail exchanger at addr on the MX port.
func (e *e2e) peer(addr netip.Addr, opts smtptest.Options) *smtptest.Peer {
	e.t.Helper()
	opts.Addr = netip.AddrPortFrom(addr, uint16(e.mxPort)).String()
	opts.Listener = e.takeReserved(addr)
	return smtptest.New(e.t, opts)
}

// takeReserved hands over the listener reserved on addr, or nil once
// reservations are released.
func (e *e2e) takeReserved(addr netip.Addr) net.Listener {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.reserved[addr]
	delete(e.reserved, addr)
	return l
}

// releaseReserved closes the listeners no peer took, once delivery can
// start: an address without a peer then refuses connections, as the
// tests of refusals expect.
func (e *e2e) releaseReserved() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for a, l := range e.reserved {
		l.Close()
		delete(e.reserved, a)
	}
}

// mxDeliverer delivers through the test's DNS server on the MX port.
func (e *e2e) mxDeliverer(adjust func(*relay.MXConfig)) *relay.MXDeliverer {
	e.t.Helper()
	e.releaseReserved()
	cfg := relay.MXConfig{
		ClientConfig: relay.ClientConfig{
			Hostname:       "relay.postern.test",
			ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second,
			ReuseTimeout: 2 * time.Second, // as serve
		},
		Resolver:     e.resolver,
		Port:         e.mxPort,
		AllowPrivate: true, // the test peers are on loopback
	}
	if adjust != nil {
		adjust(&cfg)
	}
	d, err := relay.NewMXDeliverer(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// relayConfig is a worker configuration for tests: short retries without
// jitter, the test's MX delivery.
func (e *e2e) relayConfig() relay.WorkerConfig {
	return relay.WorkerConfig{
		Store:        e.st,
		MX:           e.mxDeliverer(nil),
		RetryBase:    50 * time.Millisecond,
		Rand:         func() float64 { return 0.5 },
		DrainTimeout: 5 * time.Second,
	}
}

// startRelay runs a worker until the returned stop is called or the test
// ends; stop returns once Run has.
func (e *e2e) startRelay(cfg relay.WorkerConfig) (w *relay.Worker, stop func()) {
	e.t.Helper()
	w, err := relay.NewWorker(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	e.mu.Lock()
	e.worker = w
	e.mu.Unlock()
	go func() { ran <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				if err != nil {
					e.t.Errorf("relay: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Errorf("relay did not stop")
			}
			e.mu.Lock()
			if e.worker == w {
				e.worker = nil
			}
			e.mu.Unlock()
		})
	}
	e.t.Cleanup(stop)
	return w, stop
}

// send submits a message over SMTP with AUTH PLAIN and returns its
// MessageID.
func (e *e2e) send(token, from string, to []string, data string) string {
	e.t.Helper()
	c, err := dialAuth(e.intake, token)
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	id, err := submit(c, from, to, data)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Quit()
	return id
}

// dialAuth connects to the intake and authenticates with token.
func dialAuth(addr, token string) (*smtp.Client, error) {
	c, err := smtp.Dial(addr)
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", token, token)); err != nil {
		c.Close()
		return nil, fmt.Errorf("AUTH: %w", err)
	}
	return c, nil
}

// submit sends one message on an authenticated connection and returns
// its MessageID.
func submit(c *smtp.Client, from string, to []string, data string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	const prefix = "2.0.0 OK: queued as "
	if !strings.HasPrefix(resp.StatusText, prefix) {
		return "", fmt.Errorf("reply %q", resp.StatusText)
	}
	return strings.TrimPrefix(resp.StatusText, prefix), nil
}

// waitFor polls cond until it holds; the deadline only keeps a broken
// test from hanging.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// events returns a message's events.
func (e *e2e) events(serverID int64, id string) []store.Event {
	e.t.Helper()
	evs, err := e.st.Events(serverID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// waitFinal waits until every recipient of the message has a final
// event (Delivered or Bounced) and returns all its events.
func (e *e2e) waitFinal(serverID int64, id string) []store.Event {
	e.t.Helper()
	var evs []store.Event
	waitFor(e.t, "final events of "+id, func() bool {
		msg, err := e.st.Message(serverID, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if msg.Status == store.StatusQueued {
			return false
		}
		evs = e.events(serverID, id)
		return true
	})
	return evs
}

// eventTypes lists the event types of one recipient, in order.
func eventTypes(evs []store.Event, rcpt string) []string {
	var out []string
	for _, ev := range evs {
		if strings.EqualFold(ev.Recipient, rcpt) {
			out = append(out, ev.Type)
		}
	}
	return out
}

// header returns the header section of a message.
func header(data []byte) string {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return string(data[:i+2])
	}
	return string(data)
}

// testBody is a message as an application sends it.
func testBody(from, to, subject string) string {
	return "From: App <" + from + ">\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nBcc: hidden@example.net\r\nX-PM-Tag: welcome\r\nX-PM-Metadata-client: 42\r\n\r\nHello.\r\n"
}
