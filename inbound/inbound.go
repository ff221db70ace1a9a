// Package inbound is the SMTP listener for mail to Postern itself: the
// DMARC reports receivers send about its customers' domains, and the
// bounces and complaints that come back later to the return paths of
// sent mail. It takes mail only for dmarc+<token>@<inbound-domain> and
// bounce+<token> at any domain whose MX leads here, with no AUTH,
// and never relays anything: every other recipient is refused.
package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/internal/dmarcreport"
	"github.com/postern/postern/internal/verp"
	"github.com/postern/postern/store"
)

// Store is what the listener needs of the store.
type Store interface {
	dmarc.Store
	Domain(id int64) (store.Domain, error)
	InstallationKey() ([]byte, error)
	Message(serverID int64, messageID string) (store.Message, error)
	RecordLateBounce(serverID int64, messageID string, o store.Outcome, at time.Time) (store.Bounce, error)
}

// Config configures the listener.
type Config struct {
	// Domain is inbound-domain: the MX of this domain points at Postern.
	Domain string
	// Hostname is the name in the greeting.
	Hostname string
	Store    Store
	// TLSConfig, if set, is offered with STARTTLS.
	TLSConfig *tls.Config
	// MaxMessageBytes bounds a message; dmarcreport.MaxInput (15 MB) if
	// zero.
	MaxMessageBytes int64
	// MaxSessionsPerAddress caps one client address's sessions; 10 if
	// zero.
	MaxSessionsPerAddress int
	// CommandTimeout bounds each command and its reply; 5 minutes if
	// zero. SessionTimeout bounds a session; an hour if zero.
	CommandTimeout, SessionTimeout time.Duration
	Logger                         *slog.Logger
	Now                            func() time.Time
	Metrics                        prometheus.Registerer
	// Filed, if set, is told of each report filed, after the reply (the
	// names of its sources are looked up then).
	Filed func(store.DMARCReport)
}

// Kinds and results of postern_inbound_messages_total.
var (
	Kinds   = []string{"dmarc", "dsn", "complaint", "other"}
	Results = []string{"parsed", "failed", "duplicate", "error"}
)

// Server is the inbound listener.
type Server struct {
	cfg      Config
	smtp     *smtp.Server
	messages *prometheus.CounterVec
	rows     *prometheus.CounterVec

	mu       sync.Mutex
	sessions map[string]int // by client address
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Domain == "" {
		return nil, errors.New("inbound: a store and a domain are required")
	}
	cfg.Domain = strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Domain
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = dmarcreport.MaxInput
	}
	if cfg.MaxSessionsPerAddress <= 0 {
		cfg.MaxSessionsPerAddress = 10
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, sessions: map[string]int{},
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_inbound_messages_total",
			Help: "Messages to Postern itself, by kind (dmarc; dsn, complaint, other at a return path) and result: parsed, failed (kept with the reason), duplicate (counted once), error (the store failed: 451).",
		}, []string{"kind", "result"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_dmarc_report_rows_total",
			Help: "Rows of the DMARC reports received by mail, by disposition (none, quarantine, reject, other).",
		}, []string{"disposition"}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.messages, s.rows} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	srv := smtp.NewServer(s)
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = 50
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = cfg.CommandTimeout
	srv.TLSConfig = cfg.TLSConfig
	srv.ErrorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	s.smtp = srv
	return s, nil
}

// Serve takes connections from ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.smtp.Serve(&limitedListener{Listener: ln, s: s})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking connections and waits for the sessions.
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// limitedListener refuses a client address's sessions past the cap.
type limitedListener struct {
	net.Listener
	s *Server
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		l.s.mu.Lock()
		n := l.s.sessions[host]
		if n >= l.s.cfg.MaxSessionsPerAddress {
			l.s.mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "421 4.7.0 Too many connections from your address; try again later\r\n")
			c.Close()
			continue
		}
		l.s.sessions[host] = n + 1
		l.s.mu.Unlock()
		c.SetDeadline(time.Now().Add(l.s.cfg.SessionTimeout))
		return &countedConn{Conn: c, release: func() {
			l.s.mu.Lock()
			if l.s.sessions[host]--; l.s.sessions[host] <= 0 {
				delete(l.s.sessions, host)
			}
			l.s.mu.Unlock()
		}}, nil
	}
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// NewSession starts a session.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: s, remote: c.Conn().RemoteAddr().String()}, nil
}

type session struct {
	s       *Server
	remote  string
	domains []store.Domain // the recipients' domains, one per report address
	bounces []bounceTarget // the messages whose return paths are recipients
}

var errNoSuchRecipient = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such recipient here"}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error { return nil }

var errTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure; try again later"}

// Rcpt takes dmarc+<token>@<inbound-domain> of a domain that exists, and
// the return path of a message that exists, and nothing else.
func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	at := strings.LastIndexByte(to, '@')
	if at < 0 {
		return errNoSuchRecipient
	}
	domain, local := strings.ToLower(strings.TrimSuffix(to[at+1:], ".")), strings.ToLower(to[:at])
	if !strings.HasPrefix(local, verp.Prefix) && !strings.HasPrefix(local, dmarc.LocalPrefix) {
		return errNoSuchRecipient
	}
	key, err := ss.s.cfg.Store.InstallationKey()
	if err != nil {
		return errTemporary
	}
	if strings.HasPrefix(local, verp.Prefix) {
		// At any domain: return-path-domain, or a customer's own
		// Return-Path domain whose CNAME leads here. The signature
		// proves the address is Postern's, and nothing is relayed.
		return ss.bounceRcpt(key, local)
	}
	token, _ := strings.CutPrefix(local, dmarc.LocalPrefix)
	if domain != ss.s.cfg.Domain {
		return errNoSuchRecipient
	}
	id, ok := dmarc.ParseToken(key, token)
	if !ok {
		return errNoSuchRecipient
	}
	d, err := ss.s.cfg.Store.Domain(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoSuchRecipient
	case err != nil:
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure; try again later"}
	}
	for _, have := range ss.domains {
		if have.ID == d.ID {
			return nil
		}
	}
	ss.domains = append(ss.domains, d)
	return nil
}

// bounceRcpt takes a return path whose message exists.
func (ss *session) bounceRcpt(key []byte, local string) error {
	serverID, messageID, ok := verp.Parse(key, local)
	if !ok {
		return errNoSuchRecipient
	}
	m, err := ss.s.cfg.Store.Message(serverID, messageID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNoSuchRecipient // purged by retention, or its server deleted
	case err != nil:
		return errTemporary
	}
	for _, have := range ss.bounces {
		if have.serverID == serverID && have.msg.MessageID == messageID {
			return nil
		}
	}
	ss.bounces = append(ss.bounces, bounceTarget{serverID: serverID, msg: m})
	return nil
}

// Data files the report for each recipient's domain, and what a notice
// to a return path says, before answering: parsed, or kept as failed
// with the reason.
func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return err
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Error reading the message; try again"}
	}
	for _, t := range ss.bounces {
		kind, err := ss.notice(t, data)
		if err != nil {
			ss.s.messages.WithLabelValues("other", "error").Inc()
			ss.s.cfg.Logger.Error("inbound: cannot record a bounce", "server", t.serverID, "message_id", t.msg.MessageID, "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary storage failure; try again later"}
		}
		ss.s.messages.WithLabelValues(kind, "parsed").Inc()
		ss.s.cfg.Logger.Info("inbound: notice at a return path", "remote", ss.remote, "server", t.serverID, "message_id", t.msg.MessageID, "kind", kind)
	}
	for _, d := range ss.domains {
		report, err := dmarc.Ingest(ss.s.cfg.Store, d, data, "mail", ss.s.cfg.Now())
		result := "parsed"
		switch {
		case errors.Is(err, store.ErrDuplicateReport):
			result = "duplicate"
		case err != nil && report.ID != 0:
			result = "failed"
		case err != nil:
			ss.s.messages.WithLabelValues("dmarc", "error").Inc()
			ss.s.cfg.Logger.Error("inbound: cannot file a DMARC report", "domain", d.ID, "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary storage failure; try again later"}
		}
		ss.s.messages.WithLabelValues("dmarc", result).Inc()
		for _, row := range report.Rows {
			disp := row.Disposition
			if disp != "none" && disp != "quarantine" && disp != "reject" {
				disp = "other"
			}
			ss.s.rows.WithLabelValues(disp).Add(float64(row.Count))
		}
		if ss.s.cfg.Filed != nil && report.Status == store.DMARCParsed {
			go ss.s.cfg.Filed(report)
		}
		ss.s.cfg.Logger.Info("inbound: DMARC report", "remote", ss.remote, "domain", d.ID, "report", report.ID, "result", result,
			"org", report.OrgName, "messages", report.Messages, "reason", report.Error)
	}
	return nil
}

func (ss *session) Reset()        { ss.domains, ss.bounces = nil, nil }
func (ss *session) Logout() error { return nil }
