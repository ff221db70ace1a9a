// Package stack runs a whole Postern on loopback for tests: a bbolt store
// in t.TempDir(), the SMTP intake, a DNS server, the relay (started with
// StartRelay) delivering to the fake SMTP peers a test adds as mail
// exchangers, all on one MX port at different loopback addresses, and
// the HTTP API (ServeAPI). The relay and API tests share it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// Loopbacks are the addresses peers listen on: Linux routes all of
// 127/8 to the loopback interface.
var Loopbacks = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
	netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
}

// Options shape the stack. The zero value is the default everywhere.
type Options struct {
	// Store opens the bolt store (fault injection, caps).
	Store bolt.Options
	// Hostname is the intake's name; "postern.test" if empty.
	Hostname string
	// SenderPolicy is the intake's sender policy.
	SenderPolicy store.SenderPolicy
	// MaxSessionsPerAddress is the intake's cap per client address
	// (smtpd's default if 0): every session of a test is from 127.0.0.1.
	MaxSessionsPerAddress int
}

// Stack is a running Postern for one test.
type Stack struct {
	T        testing.TB
	Store    *bolt.Store
	Inst     auth.Installation // the operator account and its Sandbox server
	DNS      *dnstest.Server
	Resolver *relay.Resolver
	MXPort   int    // the port every peer listens on
	SMTP     string // the intake's address

	mu       sync.Mutex
	reserved map[netip.Addr]net.Listener // on MXPort, until a peer takes one
	worker   *relay.Worker               // the running relay, told of every accepted message
	opts     Options
}

// InboundDomain is the inbound listener's domain in the stack's API.
const InboundDomain = "inbound.postern.test"

// New starts the store, the DNS server and the intake.
func New(t testing.TB, opts Options) *Stack {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), opts.Store)
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
	s := &Stack{T: t, Store: st, Inst: inst, DNS: dnstest.New(t), opts: opts}
	s.MXPort, s.reserved = reserveMXPort(t)
	s.Resolver = relay.NewResolver(s.DNS.Addr())
	if opts.Hostname == "" {
		opts.Hostname = "postern.test"
	}
	s.opts = opts
	srv, err := smtpd.New(smtpd.Config{
		Hostname:     opts.Hostname,
		Store:        st,
		Credentials:  auth.NewAuthenticator(st),
		SenderPolicy: opts.SenderPolicy,
		Accepted:     func(int64, string) { s.Notify() },

		MaxSessionsPerAddress: opts.MaxSessionsPerAddress,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.SMTP = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("intake shutdown: %v", err)
		}
		// Shutdown closes only the listeners Serve has registered: when
		// the test ends before the goroutine above got that far, Serve
		// would then accept on ln forever. Closing ln makes it return.
		ln.Close()
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.Errorf("intake: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the intake's Serve did not return within 30s of shutdown")
		}
	})
	return s
}

// Notify wakes the running relay, as the intake does for each message
// it accepts.
func (s *Stack) Notify() {
	s.mu.Lock()
	w := s.worker
	s.mu.Unlock()
	if w != nil {
		w.Notify()
	}
}

// reserveMXPort listens on one port free on every address of Loopbacks
// and keeps the listeners until the test's peers take them (see Peer):
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
		reserved := map[netip.Addr]net.Listener{Loopbacks[0]: l}
		for _, a := range Loopbacks[1:] {
			o, err := net.Listen("tcp", netip.AddrPortFrom(a, uint16(port)).String())
			if err != nil {
				break
			}
			reserved[a] = o
		}
		if len(reserved) == len(Loopbacks) {
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

// TakeReserved hands over the listener reserved on addr at MXPort, or
// nil once reservations are released.
func (s *Stack) TakeReserved(addr netip.Addr) net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.reserved[addr]
	delete(s.reserved, addr)
	return l
}

// releaseReserved closes the listeners no peer took, once delivery can
// start: an address without a peer then refuses connections, as the
// tests of refusals expect.
func (s *Stack) releaseReserved() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, l := range s.reserved {
		l.Close()
		delete(s.reserved, a)
	}
}

// LiveServer creates a Live server on the installation's account and
// returns it with its token.
func (s *Stack) LiveServer(name string) (store.Server, string) {
	s.T.Helper()
	token := auth.NewToken()
	srv, err := s.Store.CreateServer(store.Server{AccountID: s.Inst.AccountID, Name: name, Color: "Blue", DeliveryType: store.DeliveryLive, SmtpApiActivated: true}, auth.StoreToken(token), time.Now())
	if err != nil {
		s.T.Fatal(err)
	}
	return srv, token
}

// SendingDomain gives the account a domain with new DKIM keys, and
// publishes their records.
func (s *Stack) SendingDomain(accountID int64, name string) dkim.Keys {
	s.T.Helper()
	keys, err := dkim.GenerateKeys(name)
	if err != nil {
		s.T.Fatal(err)
	}
	for _, k := range keys.List() {
		s.DNS.SetTXT(k.Host, k.TextValue)
	}
	if _, err := s.Store.CreateDomain(store.Domain{AccountID: accountID, Name: name, Keys: keys.List()}, time.Now()); err != nil {
		s.T.Fatal(err)
	}
	return keys
}

// Route makes mx.<domain>, at addr, the mail exchanger of domain.
func (s *Stack) Route(domain string, addr netip.Addr) {
	s.DNS.SetMX(domain, []dnstest.MX{{Host: "mx." + domain, Pref: 10}})
	s.DNS.SetA("mx."+domain, addr)
}

// Peer starts a mail exchanger at addr on the MX port.
func (s *Stack) Peer(addr netip.Addr, opts smtptest.Options) *smtptest.Peer {
	s.T.Helper()
	opts.Addr = netip.AddrPortFrom(addr, uint16(s.MXPort)).String()
	opts.Listener = s.TakeReserved(addr)
	return smtptest.New(s.T, opts)
}

// MXDeliverer delivers through the test's DNS server on the MX port.
func (s *Stack) MXDeliverer(adjust func(*relay.MXConfig)) *relay.MXDeliverer {
	s.T.Helper()
	s.releaseReserved()
	cfg := relay.MXConfig{
		ClientConfig: relay.ClientConfig{
			Hostname:       "relay.postern.test",
			ConnectTimeout: 5 * time.Second, CommandTimeout: 10 * time.Second, DataTimeout: 10 * time.Second,
			ReuseTimeout: 2 * time.Second, // as serve
		},
		Resolver:     s.Resolver,
		Port:         s.MXPort,
		AllowPrivate: true, // the test peers are on loopback
	}
	if adjust != nil {
		adjust(&cfg)
	}
	d, err := relay.NewMXDeliverer(cfg)
	if err != nil {
		s.T.Fatal(err)
	}
	return d
}

// RelayConfig is a worker configuration for tests: short retries without
// jitter, the test's MX delivery.
func (s *Stack) RelayConfig() relay.WorkerConfig {
	return relay.WorkerConfig{
		Store:        s.Store,
		MX:           s.MXDeliverer(nil),
		RetryBase:    50 * time.Millisecond,
		Rand:         func() float64 { return 0.5 },
		DrainTimeout: 5 * time.Second,
	}
}

// StartRelay runs a worker until the returned stop is called or the test
// ends; stop returns once Run has.
func (s *Stack) StartRelay(cfg relay.WorkerConfig) (w *relay.Worker, stop func()) {
	s.T.Helper()
	w, err := relay.NewWorker(cfg)
	if err != nil {
		s.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	s.mu.Lock()
	s.worker = w
	s.mu.Unlock()
	go func() {
		w.Run(ctx)
		close(ran)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-ran:
			case <-time.After(30 * time.Second):
				s.T.Errorf("relay did not stop")
			}
			s.mu.Lock()
			if s.worker == w {
				s.worker = nil
			}
			s.mu.Unlock()
		})
	}
	s.T.Cleanup(stop)
	return w, stop
}

// ServeAPI serves the HTTP API over the stack's store, looking DKIM
// records up in its DNS server, and returns its base URL. now is the
// API's clock (nil: time.Now).
func (s *Stack) ServeAPI(now func() time.Time) string {
	s.T.Helper()
	a, err := api.New(api.Config{Store: s.Store, Auth: auth.NewAuthenticator(s.Store), Resolver: s.Resolver,
		GenerateKeys: dkim.Generate, PublicURL: "http://postern.test", Now: now,
		// Sending over HTTP as the intake does.
		SenderPolicy: s.opts.SenderPolicy, Hostname: s.opts.Hostname, Accepted: func(int64, string) { s.Notify() },
		InboundDomain: InboundDomain, CNAME: s.Resolver.LookupCNAME})
	if err != nil {
		s.T.Fatal(err)
	}
	hs := httptest.NewServer(a)
	s.T.Cleanup(hs.Close)
	return hs.URL
}

// Send submits a message over SMTP with AUTH PLAIN and returns its
// MessageID. Line ends in data may be LF or CRLF.
func (s *Stack) Send(token, from string, to []string, data string) string {
	s.T.Helper()
	c, err := DialAuth(s.SMTP, token)
	if err != nil {
		s.T.Fatal(err)
	}
	defer c.Close()
	id, err := Submit(c, from, to, data)
	if err != nil {
		s.T.Fatal(err)
	}
	c.Quit()
	return id
}

// DialAuth connects to the intake at addr and authenticates with token.
func DialAuth(addr, token string) (*smtp.Client, error) {
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

// Submit sends one message on an authenticated connection and returns
// its MessageID.
func Submit(c *smtp.Client, from string, to []string, data string) (string, error) {
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
	// go-smtp's client gives the final reply only through CloseWithResponse.
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	id, ok := strings.CutPrefix(resp.StatusText, "2.0.0 OK: queued as ")
	if !ok {
		return "", fmt.Errorf("reply %q", resp.StatusText)
	}
	return id, nil
}

// WaitFor polls cond until it holds; the deadline only keeps a broken
// test from hanging.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events returns a message's events.
func (s *Stack) Events(serverID int64, id string) []store.Event {
	s.T.Helper()
	evs, err := s.Store.Events(serverID, id)
	if err != nil {
		s.T.Fatal(err)
	}
	return evs
}

// WaitFinal waits until no recipient of the message is pending, waking
// the relay meanwhile, and returns all its events.
func (s *Stack) WaitFinal(serverID int64, id string) []store.Event {
	s.T.Helper()
	var evs []store.Event
	WaitFor(s.T, "final events of "+id, func() bool {
		msg, err := s.Store.Message(serverID, id)
		if err != nil {
			s.T.Fatal(err)
		}
		if msg.Status == store.StatusQueued {
			s.Notify()
			return false
		}
		evs = s.Events(serverID, id)
		return true
	})
	return evs
}
