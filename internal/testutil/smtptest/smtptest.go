// Package smtptest runs a real SMTP server on loopback for tests of SMTP
// clients: it plays the receiving side of a delivery, answers at every
// stage as the test scripts it, and records exactly what it was sent.
package smtptest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/testca"
)

// DataAction is what the peer does with a message after DATA.
type DataAction int

const (
	// Reply reads the message and answers with Options.Data's verdict.
	Reply DataAction = iota
	// Stall reads part of the message, then neither reads nor answers
	// until the client hangs up.
	Stall
	// Hangup reads part of the message, then drops the connection.
	Hangup
)

// Credentials are a username and password for AUTH PLAIN.
type Credentials struct {
	Username, Password string
}

// Options script the peer. The zero value accepts every message, without
// TLS or AUTH.
type Options struct {
	// Addr is the address to listen on; "127.0.0.1:0" if empty.
	Addr string
	// Listener, when set, is served instead of listening on Addr: a
	// port reserved before the peer starts stays the test's.
	Listener net.Listener
	// Hostname is the name in the greeting; "smtptest.test" if empty.
	Hostname string
	// Greeting, if not nil, is the reply to every connection instead of
	// the 220 greeting, after which the peer hangs up (421 "closing"
	// is the usual one).
	Greeting *smtp.SMTPError
	// Mail, Rcpt and Data decide the replies to MAIL, to each RCPT and to
	// the end of the message: nil (or a nil func) accepts, an
	// *smtp.SMTPError is sent as it is.
	Mail func(from string) error
	Rcpt func(to string) error
	Data func(data []byte) error
	// InData is what the peer does after DATA.
	InData DataAction
	// TLS, if not nil, is offered with STARTTLS, or from the first byte
	// if ImplicitTLS. See Certificate.
	TLS         *tls.Config
	ImplicitTLS bool
	// BrokenTLS offers STARTTLS and then fails every handshake.
	BrokenTLS bool
	// Auth, if not nil, is required before MAIL, offered as AUTH PLAIN
	// and, as RFC 4954 wants, only once TLS is up.
	Auth *Credentials
	// MaxMessageBytes, if positive, is announced with SIZE and enforced.
	MaxMessageBytes int64
	// SMTPUTF8 announces SMTPUTF8.
	SMTPUTF8 bool
	// Sink only counts what it accepts (see Received): no messages, no
	// transcript kept. For benchmarks, where recording would cost more
	// than what is measured.
	Sink bool
}

// Message is one message the peer accepted, as it arrived.
type Message struct {
	Helo       string // the client's EHLO name
	From       string
	To         []string // the accepted recipients, in order
	Mail       smtp.MailOptions
	Data       []byte
	TLSVersion uint16 // 0 without TLS
	AuthUser   string // "" without AUTH
}

// Peer is a running SMTP server.
type Peer struct {
	t        testing.TB
	opts     Options
	server   *smtp.Server
	listener net.Listener
	served   chan struct{}

	mu          sync.Mutex
	transcript  strings.Builder
	messages    []Message
	received    int
	connections int
	open        int
}

// New starts a peer; it stops when the test ends. The test fails if a
// client then still holds a connection open: every delivery must end
// with its connection closed.
func New(t testing.TB, opts Options) *Peer {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Hostname == "" {
		opts.Hostname = "smtptest.test"
	}
	l := opts.Listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", opts.Addr); err != nil {
			t.Fatalf("smtptest: listen on %s: %v", opts.Addr, err)
		}
	}
	p := &Peer{t: t, opts: opts, served: make(chan struct{})}
	p.listener = &listener{Listener: l, peer: p}

	s := smtp.NewServer(smtp.BackendFunc(p.newSession))
	s.Domain = opts.Hostname
	s.MaxMessageBytes = opts.MaxMessageBytes
	s.EnableSMTPUTF8 = opts.SMTPUTF8
	s.ErrorLog = log.New(io.Discard, "", 0)
	if !opts.Sink {
		s.Debug = transcriptWriter{p}
	}
	switch {
	case opts.BrokenTLS:
		s.TLSConfig = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("smtptest: TLS broken on purpose")
		}}
	case opts.TLS != nil && opts.ImplicitTLS:
		p.listener = tls.NewListener(p.listener, opts.TLS)
	case opts.TLS != nil:
		s.TLSConfig = opts.TLS
	}
	p.server = s

	go func() {
		defer close(p.served)
		s.Serve(p.listener)
	}()
	t.Cleanup(p.close)
	return p
}

// Addr is the address the peer listens on.
func (p *Peer) Addr() string { return p.listener.Addr().String() }

// Port is the port the peer listens on.
func (p *Peer) Port() int {
	return int(netip.MustParseAddrPort(p.Addr()).Port())
}

// Messages returns the messages accepted so far, oldest first.
func (p *Peer) Messages() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.messages...)
}

// Received is the number of messages accepted so far, kept or not.
func (p *Peer) Received() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.received
}

// Transcript is everything said on every connection so far, both ways,
// in clear text also under TLS; scripted Greeting refusals are not in it.
func (p *Peer) Transcript() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.transcript.String()
}

type transcriptWriter struct{ p *Peer }

func (w transcriptWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.transcript.Write(b)
}

// Connections is the number of connections accepted so far.
func (p *Peer) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.connections
}

func (p *Peer) close() {
	// Clients have had the whole test to hang up, and get a moment more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		open := p.open
		p.mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			p.t.Errorf("smtptest: %d connection(s) still open at the end of the test", open)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.server.Close()
	// Close closes only the listener Serve has registered: if the test
	// ends before Serve's goroutine got that far, Serve would then accept
	// on it forever.
	p.listener.Close()
	select {
	case <-p.served:
	case <-time.After(5 * time.Second):
		p.t.Errorf("smtptest: server did not stop")
	}
}

// listener counts connections and answers the scripted greeting.
type listener struct {
	net.Listener
	peer *Peer
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p := l.peer
		p.mu.Lock()
		p.connections++
		p.open++
		p.mu.Unlock()
		tracked := &conn{Conn: c, peer: p}
		if g := p.opts.Greeting; g != nil {
			io.WriteString(tracked, formatReply(g))
			tracked.Close()
			continue
		}
		return tracked, nil
	}
}

func formatReply(e *smtp.SMTPError) string {
	if e.EnhancedCode == (smtp.EnhancedCode{}) || e.EnhancedCode == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d %s\r\n", e.Code, e.Message)
	}
	ec := e.EnhancedCode
	return fmt.Sprintf("%d %d.%d.%d %s\r\n", e.Code, ec[0], ec[1], ec[2], e.Message)
}

// conn notes when a connection ends, whoever closes it.
type conn struct {
	net.Conn
	peer *Peer
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.peer.mu.Lock()
		c.peer.open--
		c.peer.mu.Unlock()
	})
	return c.Conn.Close()
}

type session struct {
	peer     *Peer
	conn     *smtp.Conn
	authUser string
	msg      Message
}

func (p *Peer) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{peer: p, conn: c}, nil
}

func (s *session) AuthMechanisms() []string {
	if s.peer.opts.Auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	want := s.peer.opts.Auth
	if want == nil || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != want.Username || password != want.Password {
			return smtp.ErrAuthFailed // exactly this value: go-smtp compares, see go-libraries.md
		}
		s.authUser = username
		return nil
	}), nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.peer.opts.Auth != nil && s.authUser == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	if f := s.peer.opts.Mail; f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	s.msg = Message{Helo: s.conn.Hostname(), From: from, AuthUser: s.authUser}
	if opts != nil {
		s.msg.Mail = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := s.peer.opts.Rcpt; f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.msg.To = append(s.msg.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	switch s.peer.opts.InData {
	case Stall:
		io.ReadFull(r, make([]byte, 16))
		// Read nothing more of the message, answer nothing, until the
		// client gives up and hangs up (or the test ends).
		io.Copy(io.Discard, s.conn.Conn())
		return errors.New("smtptest: stalled")
	case Hangup:
		io.ReadFull(r, make([]byte, 16))
		s.conn.Close()
		return errors.New("smtptest: hung up")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if f := s.peer.opts.Data; f != nil {
		if err := f(data); err != nil {
			return err
		}
	}
	s.msg.Data = data
	if state, ok := s.conn.TLSConnectionState(); ok {
		s.msg.TLSVersion = state.Version
	}
	s.peer.mu.Lock()
	s.peer.received++
	if !s.peer.opts.Sink {
		s.peer.messages = append(s.peer.messages, s.msg)
	}
	s.peer.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.msg = Message{}
}

func (s *session) Logout() error { return nil }

// Certificate makes a certificate for names (host names or IP addresses)
// from a new test authority, and returns a server configuration using it
// and the pool a client must trust to verify it.
func Certificate(t testing.TB, names ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ca := testca.New(t)
	return &tls.Config{Certificates: []tls.Certificate{ca.Issue(names...)}}, ca.Pool()
}
