// Package smtpd is Postern's SMTP listener: it authenticates each session
// with a server token, applies per-command policy, and files each accepted
// message durably in that server's part of the store before it answers 250.
package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// Store is what the listener needs of the store. The sender policy and
// the inactive-recipient check are part of it, rather than optional
// fields, so that they cannot be left out by mistake.
type Store interface {
	Server(id int64) (store.Server, error)
	// CredentialsGeneration changes after every committed change that
	// can take away what a token grants (see store.Tokens).
	CredentialsGeneration() uint64
	Enqueue(sub store.Submission) error
	Domains
	Suppressions
	Limits
	Streams
}

// Streams are a server's message streams, which X-PM-Message-Stream
// picks, and their own suppressions.
type Streams interface {
	Stream(serverID int64, id string) (store.Stream, error)
	StreamSuppressed(serverID int64, stream, email string) (store.StreamSuppression, bool, error)
	InstallationKey() ([]byte, error)
}

// Domains finds sending domains, for the sender policy.
type Domains interface {
	// DomainByName returns the domain named name, whichever account has
	// it, or an error wrapping store.ErrNotFound.
	DomainByName(name string) (store.Domain, error)
}

// Suppressions tells the recipients a server has made inactive.
type Suppressions interface {
	Suppressed(serverID int64, email string) (store.Suppression, bool, error)
}

// Throttle shuts out client addresses that fail to log in too often;
// *auth.Throttle counts on one node, *auth.SharedThrottle on all the
// nodes of a shared store.
type Throttle interface {
	// Blocked reports whether addr is shut out, and until when.
	Blocked(addr string) (bool, time.Time)
	// Fail records a failed login and reports whether addr is now shut
	// out.
	Fail(addr string) bool
}

// Credentials resolves an SMTP login to a server token, and looks that
// token up again by its hash, to learn whether it was revoked since.
type Credentials interface {
	SMTPCredentials(username, password string) (auth.Credential, error)
	Recheck(hash []byte) (store.Token, error)
}

// Config is the listener's configuration. Zero limits take the defaults.
type Config struct {
	Hostname    string // in the greeting and Received fields
	Store       Store
	Credentials Credentials
	Throttle    Throttle // nil: no throttling
	// Foreground, when set, is told when a message's DATA starts, and
	// the function it returns when its reply is decided: the relay's
	// signing waits while messages are in between (see package cpushare).
	Foreground func() (done func())
	// TLSConfig enables STARTTLS on Serve and is required by ServeTLS.
	TLSConfig *tls.Config

	MaxMessageBytes int64         // default 10 MiB
	MaxRecipients   int           // default 50
	MaxLineLength   int           // default 4096
	CommandTimeout  time.Duration // per command line and per DATA; default 5 min
	WriteTimeout    time.Duration // default 1 min
	SessionTimeout  time.Duration // a connection's whole life; default 1 h
	MaxSessions     int           // concurrent connections; default 1000
	// MaxSessionsPerAddress caps the concurrent connections from one
	// client address (an IPv6 client's /64), so that one address cannot
	// take every session; default 20.
	MaxSessionsPerAddress int
	// PreauthTimeout is how long a session may go on without a
	// successful AUTH, counted from its connection (not from its last
	// command, so NOOPs do not extend it); default 30s.
	PreauthTimeout time.Duration
	// MaxPreauthCommands is how many commands other than AUTH a client
	// may send before it authenticates; default 10. Without TLS and under
	// implicit TLS the next gets 421 4.7.0 and the connection closes;
	// after STARTTLS, where go-smtp holds the TLS stream, the next has its
	// reply and then the connection closes.
	MaxPreauthCommands int
	// MaxInflightBytes caps the message data all sessions hold in memory
	// at once (see inflight.go); default 256 MiB. A session whose DATA
	// finds no room within InflightWait (default 10s) gets 451 4.3.2.
	MaxInflightBytes int64
	InflightWait     time.Duration

	// AllowPlaintextAuth allows AUTH without TLS from any address. Without
	// it, only loopback clients may authenticate in plaintext.
	AllowPlaintextAuth bool
	// IsLocal says whether a client address may authenticate without TLS
	// (unless AllowPlaintextAuth). Nil means loopback addresses only.
	IsLocal func(net.Addr) bool

	// AllowPrivateDestinations accepts recipients at address literals of
	// loopback, private or link-local addresses (user@[127.0.0.1]).
	// Without it they are refused at RCPT with 550 5.7.1, so that a
	// tenant cannot make the relay open SMTP to this machine or its
	// private networks; the relay refuses MX answers there likewise.
	AllowPrivateDestinations bool

	// SenderPolicy says which From domains a Live server may send from;
	// the zero value is PolicyRegistered.
	SenderPolicy store.SenderPolicy
	// UnsubscribeBase is the API's public URL, where the unsubscribe
	// links of Broadcasts messages point; without it they get none.
	UnsubscribeBase string
	// Accepted, when set, is called after each message is committed to
	// the store, before the 250 reply, on the session's goroutine: it
	// must not block (the relay's wake-up is a non-blocking send).
	Accepted func(serverID int64, messageID string)

	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
	// Metrics, when set, gets the listener's metrics (see metrics.go).
	Metrics prometheus.Registerer
}

// Defaults of Config's limits.
const (
	DefaultMaxMessageBytes = 10 << 20
	DefaultMaxRecipients   = 50
	DefaultMaxLineLength   = 4096
	DefaultCommandTimeout  = 5 * time.Minute
	DefaultWriteTimeout    = time.Minute
	DefaultSessionTimeout  = time.Hour
	DefaultMaxSessions     = 1000
	DefaultMaxPerAddress   = 20
	DefaultPreauthTimeout  = 30 * time.Second
	DefaultPreauthCommands = 10
	DefaultMaxInflight     = 256 << 20
	DefaultInflightWait    = 10 * time.Second
)

func (c *Config) setDefaults() {
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = DefaultMaxLineLength
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxSessionsPerAddress <= 0 {
		c.MaxSessionsPerAddress = DefaultMaxPerAddress
	}
	if c.PreauthTimeout <= 0 {
		c.PreauthTimeout = DefaultPreauthTimeout
	}
	if c.MaxPreauthCommands <= 0 {
		c.MaxPreauthCommands = DefaultPreauthCommands
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = DefaultMaxInflight
	}
	if c.InflightWait <= 0 {
		c.InflightWait = DefaultInflightWait
	}
	if c.IsLocal == nil {
		c.IsLocal = isLoopback
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func isLoopback(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	return false
}

// streamLineLimit is go-smtp's own line limit, a ceiling above
// max-line-length. go-smtp applies it to command lines and to DATA, and a
// line over it ends the session (500 5.4.0, close): its limit, once
// crossed, fails every later read. Intake checks max-line-length itself
// (lineLengthReader), with a 554 that leaves the session usable, so
// go-smtp's limit only has to bound what a command line may take in
// memory: 64 KiB, or 16 times max-line-length if that is more.
func streamLineLimit(maxLineLength int) int {
	return max(64<<10, 16*maxLineLength)
}

// Server is the SMTP listener. One Server serves any number of listeners,
// with STARTTLS (Serve) or implicit TLS (ServeTLS).
type Server struct {
	cfg      Config
	metrics  *metrics
	starttls *smtp.Server // plaintext, offering STARTTLS when configured
	implicit *smtp.Server // behind a TLS listener: STARTTLS not offered
	sessions chan struct{}
	inflight *inflight

	perAddressMu sync.Mutex
	perAddress   map[string]int // open sessions by addressKey

	mu        sync.Mutex
	listeners []net.Listener
	shutdown  bool
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Hostname == "" {
		return nil, errors.New("smtpd: Config.Hostname is empty")
	}
	if cfg.Store == nil || cfg.Credentials == nil {
		return nil, errors.New("smtpd: Config.Store and Config.Credentials are required")
	}
	if cfg.Throttle == nil {
		// A nil *auth.Throttle throttles nothing.
		cfg.Throttle = (*auth.Throttle)(nil)
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("smtpd: metrics: %w", err)
	}
	cfg.TLSConfig = m.countHandshakes(cfg.TLSConfig)
	s := &Server{cfg: cfg, metrics: m, sessions: make(chan struct{}, cfg.MaxSessions), inflight: newInflight(cfg.MaxInflightBytes),
		perAddress: make(map[string]int)}
	s.starttls = s.newSMTPServer(cfg.TLSConfig)
	s.implicit = s.newSMTPServer(nil)
	return s, nil
}

func (s *Server) newSMTPServer(tlsConfig *tls.Config) *smtp.Server {
	srv := smtp.NewServer(&backend{srv: s})
	srv.Domain = s.cfg.Hostname
	srv.TLSConfig = tlsConfig
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxLineLength = streamLineLimit(s.cfg.MaxLineLength)
	srv.ReadTimeout = s.cfg.CommandTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	// Postern decides itself who may authenticate without TLS (see
	// Session.Auth), so go-smtp must always offer AUTH.
	srv.AllowInsecureAuth = true
	srv.EnableSMTPUTF8 = true
	srv.ErrorLog = slogAdapter{s.cfg.Logger}
	return srv
}

// Serve accepts plaintext connections on l, offering STARTTLS when the
// configuration has a certificate. It returns nil after Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.serve(s.starttls, &listener{Listener: l, srv: s})
}

// ServeTLS accepts implicit-TLS connections (port 465) on l.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.cfg.TLSConfig == nil {
		return errors.New("smtpd: implicit TLS needs Config.TLSConfig")
	}
	return s.serve(s.implicit, &listener{Listener: l, srv: s, tls: s.cfg.TLSConfig})
}

// serve runs srv on l until Shutdown. go-smtp's own Shutdown only closes
// the listeners its Serve has registered, so a Serve that starts while
// Shutdown runs would accept forever: Postern closes every listener it
// was given itself, and a listener given after Shutdown at once.
func (s *Server) serve(srv *smtp.Server, l net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		l.Close()
	} else {
		s.listeners = append(s.listeners, l)
	}
	s.mu.Unlock()
	err := srv.Serve(l)
	s.mu.Lock()
	stopped := s.shutdown
	s.mu.Unlock()
	if stopped {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets open sessions finish until ctx
// is done, then closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	errs := make(chan error, 2)
	for _, srv := range []*smtp.Server{s.starttls, s.implicit} {
		go func() { errs <- srv.Shutdown(ctx) }()
	}
	err := errors.Join(<-errs, <-errs)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errors.Join(fmt.Errorf("smtpd: sessions still open at shutdown deadline"), s.starttls.Close(), s.implicit.Close())
	}
	return nil
}

// slogAdapter sends go-smtp's own log lines (I/O errors of single
// connections) to the debug level: they are about one client, not the
// service.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Printf(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Println(v ...any)               { a.l.Debug(fmt.Sprint(v...)) }

// listener counts sessions, refuses those over the limit, and wraps each
// connection (in TLS first, for implicit TLS).
type listener struct {
	net.Listener
	srv *Server
	tls *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.srv.sessions <- struct{}{}:
		default:
			go l.refuse(raw, errTooManySessions())
			continue
		}
		key := addressKey(raw.RemoteAddr())
		if !l.srv.takeAddressSlot(key) {
			<-l.srv.sessions
			go l.refuse(raw, errTooManyFromAddress())
			continue
		}
		m := l.srv.metrics
		m.sessionsTotal.Inc()
		m.sessionsOpen.Inc()
		replies := NewReplyBuffer(raw)
		c := &conn{
			Conn:             replies,
			replies:          replies,
			hostname:         l.srv.cfg.Hostname,
			handshakeTimeout: l.srv.cfg.WriteTimeout,
			release: func() {
				m.sessionsOpen.Dec()
				l.srv.releaseAddressSlot(key)
				<-l.srv.sessions
			},
			logger:             l.srv.cfg.Logger,
			opened:             time.Now(),
			preauth:            true,
			maxPreauthCommands: l.srv.cfg.MaxPreauthCommands,
			preauthTimeout:     l.srv.cfg.PreauthTimeout,
		}
		if l.tls != nil {
			c.tls = tls.Server(replies, l.tls)
			c.Conn = c.tls
		}
		c.lifetime = time.AfterFunc(l.srv.cfg.SessionTimeout, func() { c.Close() })
		c.preauthTimer = time.AfterFunc(l.srv.cfg.PreauthTimeout, c.preauthExpired)
		return c, nil
	}
}

// takeAddressSlot counts a new session from the address with key, unless
// that address has MaxSessionsPerAddress open already.
func (s *Server) takeAddressSlot(key string) bool {
	s.perAddressMu.Lock()
	defer s.perAddressMu.Unlock()
	if s.perAddress[key] >= s.cfg.MaxSessionsPerAddress {
		return false
	}
	s.perAddress[key]++
	return true
}

func (s *Server) releaseAddressSlot(key string) {
	s.perAddressMu.Lock()
	defer s.perAddressMu.Unlock()
	if s.perAddress[key] <= 1 {
		delete(s.perAddress, key)
	} else {
		s.perAddress[key]--
	}
}

// addressKey is what limits per client count by: the address without
// its port, and for IPv6 its /64, which one client usually holds whole.
func addressKey(a net.Addr) string {
	host := a.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// refuse answers a connection that is over a session limit with e and
// closes it.
func (l *listener) refuse(raw net.Conn, e *Error) {
	defer raw.Close()
	l.srv.metrics.refused.WithLabelValues(NoServer, e.Reason).Inc()
	if l.tls != nil {
		return // a reply would need a TLS handshake: just close
	}
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(raw, "%d %d.%d.%d %s\r\n", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
}

// conn is one client connection as go-smtp sees it. It replaces go-smtp's
// fixed greeting with Postern's, can close itself right after a reply (for
// 421 replies, which end the session), and knows its TLS state when TLS was
// set up beneath go-smtp (implicit TLS).
type conn struct {
	net.Conn
	hostname         string
	tls              *tls.Conn    // implicit TLS
	replies          *ReplyBuffer // beneath TLS, if any: holds replies until the next read
	handshakeTimeout time.Duration
	release          func()
	lifetime         *time.Timer

	logger *slog.Logger
	opened time.Time

	mu              sync.Mutex
	greeted         bool
	upgraded        bool // STARTTLS: a *tls.Conn now reads and writes over this one
	closeAfterWrite bool
	closed          bool
	serverID        int64 // the last server authenticated, for the log
	// Until the first successful AUTH: the commands read (see
	// countPreauth), and whether the time allowed has run out.
	preauth            bool
	preauthTimer       *time.Timer
	preauthOver        bool
	maxPreauthCommands int
	preauthCommands    int
	preauthTimeout     time.Duration
	lineStart          []byte // the first bytes of the line being read
	inAuthExchange     bool   // the last reply was 334: lines are SASL responses
	// After STARTTLS the stream is go-smtp's to decrypt, but go-smtp
	// sets a read deadline before each line it reads (command or SASL
	// response): those calls count the lines, and the session reports
	// the ones that belonged to AUTH.
	tlsLines, tlsAuthLines int
	nAccepted              int
	nRefused               int
	nAuthFailed            int
}

func (c *conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	first := !c.greeted
	c.greeted = true
	closeAfter := c.closeAfterWrite
	c.mu.Unlock()
	if first {
		// go-smtp's first write is its greeting, "220 <Domain> ESMTP
		// Service Ready", which it does not let us word.
		if c.tls != nil {
			// go-smtp only bounds the handshake of a *tls.Conn it
			// can see; this one is beneath it.
			c.tls.SetDeadline(time.Now().Add(c.handshakeTimeout))
			if err := c.tls.Handshake(); err != nil {
				return 0, err
			}
			c.tls.SetDeadline(time.Time{})
		}
		if _, err := io.WriteString(c.Conn, "220 "+c.hostname+" ESMTP Postern\r\n"); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.mu.Lock()
	if c.preauth && !c.upgraded {
		// A 334 asks for the next SASL response, which is no command.
		c.inAuthExchange = bytes.HasPrefix(p, []byte("334 "))
	}
	c.mu.Unlock()
	if bytes.HasPrefix(p, []byte("220 ")) {
		// After the greeting, go-smtp writes a 220 only to go ahead
		// with STARTTLS; from then on this connection carries TLS.
		c.mu.Lock()
		c.upgraded = true
		c.mu.Unlock()
	}
	n, err := c.Conn.Write(p)
	if closeAfter {
		c.Close()
	}
	return n, err
}

// Read ends the session when the client does not complete a command line
// or a message within command-timeout: 421 4.4.2 and close. go-smtp would
// otherwise take the part of a line read before the deadline as a whole
// command (bufio.Reader.ReadLine returns a partial line without its
// error), answer it, and wait again: a client sending a byte at a time
// held its session for several timeouts, and a line cut short was read
// as a command.
//
// Before the first successful AUTH it also ends the session, with 421
// 4.7.0, when the client has not authenticated within preauth-timeout of
// connecting, or sends more than MaxPreauthCommands other commands: an
// address must not hold sessions open with NOOPs.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	plain := !c.upgraded
	expired := c.preauthOver
	tooMany := c.preauth && plain && c.countPreauth(p[:n])
	c.mu.Unlock()
	if tooMany {
		c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c.Conn, "421 4.7.0 "+c.hostname+" Too many commands before authentication; closing the connection\r\n")
		c.Close()
		return 0, net.ErrClosed
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		if plain {
			// Under STARTTLS a plaintext reply would break the TLS
			// stream: then the connection just closes.
			c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			if expired {
				io.WriteString(c.Conn, fmt.Sprintf("421 4.7.0 %s Authentication required within %s of connecting; closing the connection\r\n", c.hostname, c.preauthTimeout))
			} else {
				io.WriteString(c.Conn, "421 4.4.2 "+c.hostname+" Timeout waiting for the client; closing the connection\r\n")
			}
		}
		c.Close()
	}
	return n, err
}

// countPreauth counts the command lines in p that are not AUTH or a
// response within an AUTH exchange, and reports whether they are now
// over the limit. c.mu is held.
func (c *conn) countPreauth(p []byte) bool {
	for _, b := range p {
		if len(c.lineStart) < len("AUTH ") {
			c.lineStart = append(c.lineStart, b)
		}
		if b != '\n' {
			continue
		}
		if !c.inAuthExchange && !bytes.EqualFold(bytes.TrimRight(c.lineStart, "\r\n"), []byte("AUTH")) &&
			!bytes.HasPrefix(bytes.ToUpper(c.lineStart), []byte("AUTH ")) {
			c.preauthCommands++
		}
		c.lineStart = c.lineStart[:0]
	}
	return c.preauthCommands > c.maxPreauthCommands
}

// preauthExpired ends a session that has not authenticated within
// preauth-timeout: the read deadline moves to the past, so the Read in
// progress, or the next, fails and Read closes the session.
func (c *conn) preauthExpired() {
	c.mu.Lock()
	if !c.preauth {
		c.mu.Unlock()
		return
	}
	c.preauthOver = true
	c.mu.Unlock()
	c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// SetReadDeadline keeps the deadline in the past once preauth-timeout
// has run out: go-smtp sets a new one before each line it reads.
//
// After STARTTLS, before AUTH, those calls also count the command lines
// (see tlsLines): when the lines read so far, less AUTH's, are more than
// MaxPreauthCommands, the deadline goes to the past as well, and the read
// fails and closes the session. The command over the limit has had its
// reply by then: under TLS Postern can neither see a line before go-smtp
// answers it nor write a reply of its own.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	if c.preauth && c.upgraded {
		c.tlsLines++
		// Lines already read: all but the one about to be.
		if read := c.tlsLines - 1 - c.tlsAuthLines; c.preauthCommands+read > c.maxPreauthCommands {
			c.preauthOver = true
		}
	}
	if c.preauthOver {
		t = time.Unix(1, 0)
	}
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// authLine tells the count of commands before AUTH that a line read
// belonged to AUTH: the command itself or a SASL response.
func (c *conn) authLine() {
	c.mu.Lock()
	if c.upgraded {
		c.tlsAuthLines++
	}
	c.mu.Unlock()
}

// SetDeadline is SetReadDeadline's counterpart for both directions.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// flushReplies sends the replies held for the next read, for a session
// about to wait for something other than the client.
func (c *conn) flushReplies() error { return c.replies.Flush() }

// closeAfterNextWrite makes the next reply the last.
func (c *conn) closeAfterNextWrite() {
	c.mu.Lock()
	c.closeAfterWrite = true
	c.mu.Unlock()
}

func (c *conn) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	c.lifetime.Stop()
	c.preauthTimer.Stop()
	c.release()
	err := c.Conn.Close()
	c.mu.Lock()
	c.logger.Info("smtp session end", "remote", c.RemoteAddr().String(), "server", c.serverID,
		"accepted", c.nAccepted, "refused", c.nRefused, "auth_failures", c.nAuthFailed,
		"duration", time.Since(c.opened).Round(time.Millisecond))
	c.mu.Unlock()
	return err
}

// underlying finds Postern's conn beneath what go-smtp holds (after
// STARTTLS it holds a *tls.Conn over it).
func underlying(c net.Conn) *conn {
	switch v := c.(type) {
	case *conn:
		return v
	case *tls.Conn:
		if pc, ok := v.NetConn().(*conn); ok {
			return pc
		}
	}
	return nil
}

// Per-connection counters for the session-end log line.
func (c *conn) authenticated(serverID int64) {
	c.mu.Lock()
	c.serverID = serverID
	c.preauth = false
	c.mu.Unlock()
	c.preauthTimer.Stop()
}

func (c *conn) accepted() {
	c.mu.Lock()
	c.nAccepted++
	c.mu.Unlock()
}

func (c *conn) refused() {
	c.mu.Lock()
	c.nRefused++
	c.mu.Unlock()
}

func (c *conn) authFailed() {
	c.mu.Lock()
	c.nAuthFailed++
	c.mu.Unlock()
}

func tls2string(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1.0"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}
