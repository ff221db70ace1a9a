package smtpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/internal/domainname"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/unsubscribe"
	"github.com/postern/postern/store"
)

type backend struct{ srv *Server }

// NewSession runs at EHLO (and again after STARTTLS, which starts over).
func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	pc := underlying(c.Conn())
	if pc == nil {
		return nil, errors.New("smtpd: connection not accepted by smtpd's listener")
	}
	return &session{srv: b.srv, cfg: &b.srv.cfg, c: c, pc: pc}, nil
}

// session is one SMTP session: the state between EHLO and the end of the
// connection (or STARTTLS).
type session struct {
	srv *Server
	cfg *Config
	c   *smtp.Conn
	pc  *conn

	server *store.Server // set by a successful AUTH; kept across RSET
	// credential is the token hash the session authenticated with, and
	// generation the store's CredentialsGeneration read before that
	// token and server were last looked up (see recheck).
	credential []byte
	generation uint64
	from       string
	size       int64 // SIZE declared in MAIL FROM; 0 if none
	rcpts      []string
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

// clientIP is the throttling key: the address without the port.
func (s *session) clientIP() string {
	addr := s.pc.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// throttleKey is the address failures are counted against. An IPv6 client
// usually holds a whole /64, so failures count against the /64: otherwise
// it could rotate addresses and never be shut out.
func (s *session) throttleKey() string { return addressKey(s.pc.RemoteAddr()) }

// tlsState returns the TLS state whether go-smtp set TLS up (STARTTLS) or
// the listener did (implicit TLS).
func (s *session) tlsState() (version string, ok bool) {
	if st, ok := s.c.TLSConnectionState(); ok {
		return tls2string(st.Version), true
	}
	if s.pc.tls != nil {
		return tls2string(s.pc.tls.ConnectionState().Version), true
	}
	return "", false
}

// refuse logs a refusal's cause and gives go-smtp the reply to write.
func (s *session) refuse(e *Error) error {
	if e.Cause != nil {
		s.cfg.Logger.Warn("smtp refusal", "code", e.Code, "remote", s.clientIP(), "err", e.Cause)
	}
	if e.Close {
		s.pc.closeAfterNextWrite()
	}
	s.pc.refused()
	var server int64
	if s.server != nil {
		server = s.server.ID
	}
	s.srv.metrics.refused.WithLabelValues(serverLabel(server), reasonLabel(e.Reason)).Inc()
	return e.smtpError()
}

func (s *session) AuthMechanisms() []string { return auth.Mechanisms }

func (s *session) Auth(mech string) (sasl.Server, error) {
	s.pc.authLine()
	if s.server != nil {
		return nil, s.refuse(errAlreadyAuthenticated())
	}
	if blocked, until := s.cfg.Throttle.Blocked(s.throttleKey()); blocked {
		return nil, s.refuse(errTooManyFailures(until))
	}
	if _, isTLS := s.tlsState(); !isTLS && !s.cfg.AllowPlaintextAuth && !s.cfg.IsLocal(s.pc.RemoteAddr()) {
		return nil, s.refuse(errEncryptionRequired())
	}
	inner := auth.NewSASLServer(mech, s.checkCredentials)
	if inner == nil {
		return nil, s.refuse(errMechanism(mech))
	}
	return &authReply{Server: inner, pc: s.pc}, nil
}

// authReply words the success reply as the design has it ("235 2.7.0
// Authentication successful"); go-smtp's own is fixed. It also tells the
// connection which lines were SASL responses (every Next but the first,
// which carries the AUTH command's own initial response).
type authReply struct {
	sasl.Server
	pc     *conn
	called bool
}

func (a *authReply) Next(response []byte) ([]byte, bool, error) {
	if a.called {
		a.pc.authLine()
	}
	a.called = true
	challenge, done, err := a.Server.Next(response)
	if err == nil && done {
		return nil, false, replyAuthOK()
	}
	return challenge, done, err
}

// checkCredentials is the SASL callback: it resolves the token and decides
// the reply. What it logs names the reason, never the credentials.
func (s *session) checkCredentials(username, password string) error {
	ip, key := s.clientIP(), s.throttleKey()
	generation := s.cfg.Store.CredentialsGeneration()
	tok, err := s.cfg.Credentials.SMTPCredentials(username, password)
	if err != nil {
		if !errors.Is(err, auth.ErrInvalidToken) && !errors.Is(err, auth.ErrAccountTokenOverSMTP) && !errors.Is(err, auth.ErrAmbiguousCredentials) {
			return s.refuse(errAuthUnavailable(err))
		}
		s.cfg.Logger.Info("smtp auth failed", "remote", ip, "reason", err.Error())
		s.pc.authFailed()
		s.srv.metrics.authFailures.Inc()
		if s.cfg.Throttle.Fail(key) {
			_, until := s.cfg.Throttle.Blocked(key)
			return s.refuse(errTooManyFailures(until))
		}
		return s.refuse(errAuthInvalid())
	}
	srv, err := s.cfg.Store.Server(tok.ServerID)
	if errors.Is(err, store.ErrNotFound) {
		s.cfg.Logger.Info("smtp auth failed", "remote", ip, "reason", "token of a deleted server")
		s.srv.metrics.authFailures.Inc()
		return s.refuse(errAuthInvalid())
	}
	if err != nil {
		return s.refuse(errAuthUnavailable(err))
	}
	if !srv.SmtpApiActivated {
		s.cfg.Logger.Info("smtp auth refused", "remote", ip, "server", srv.ID, "reason", "SMTP turned off for the server")
		return s.refuse(errSMTPDisabled(srv.Name))
	}
	s.server, s.credential, s.generation = &srv, tok.Hash, generation
	s.pc.authenticated(srv.ID)
	return nil
}

// recheck makes sure, before a transaction, that the session's token
// still exists and its server may still send over SMTP: a token revoked,
// a server deleted or switched off reaches sessions already open. While
// the store's CredentialsGeneration has not moved, nothing of that kind
// changed and it reads nothing. When the credentials no longer hold, the
// session's authentication is dropped.
func (s *session) recheck() error {
	generation := s.cfg.Store.CredentialsGeneration()
	if generation == s.generation {
		return nil
	}
	tok, err := s.cfg.Credentials.Recheck(s.credential)
	var srv store.Server
	if err == nil {
		if tok.Kind != store.KindServer || tok.ServerID != s.server.ID {
			err = auth.ErrInvalidToken
		} else {
			srv, err = s.cfg.Store.Server(tok.ServerID)
		}
	}
	switch {
	case errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, store.ErrNotFound):
		s.cfg.Logger.Info("smtp session deauthenticated", "remote", s.clientIP(), "server", s.server.ID, "reason", "token revoked or server deleted")
		refusal := s.refuse(errCredentialsRevoked())
		s.deauthenticate()
		return refusal
	case err != nil:
		return s.refuse(errAuthUnavailable(err))
	case !srv.SmtpApiActivated:
		s.cfg.Logger.Info("smtp session deauthenticated", "remote", s.clientIP(), "server", srv.ID, "reason", "SMTP turned off for the server")
		refusal := s.refuse(errSMTPDisabled(srv.Name))
		s.deauthenticate()
		return refusal
	}
	s.server, s.generation = &srv, generation
	return nil
}

// deauthenticate drops the session's authentication: the client must
// AUTH again before its next transaction.
func (s *session) deauthenticate() {
	s.server, s.credential = nil, nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.server == nil {
		return s.refuse(errAuthRequired())
	}
	if err := s.recheck(); err != nil {
		return err
	}
	// The null sender is allowed: some applications send notifications
	// that must never bounce.
	if from != "" && !validAddress(from) {
		return s.refuse(errBadSender())
	}
	if from != "" {
		if e := s.checkOtherSenders(fieldMailFrom, from); e != nil {
			return s.refuse(e)
		}
	}
	if e := s.checkLimits(); e != nil {
		return s.refuse(e)
	}
	s.from, s.rcpts = from, s.rcpts[:0]
	s.size = 0
	if opts != nil {
		s.size = opts.Size
	}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.server == nil {
		return s.refuse(errAuthRequired())
	}
	if !validAddress(to) {
		return s.refuse(errBadRecipient())
	}
	if !s.cfg.AllowPrivateDestinations {
		if ip, ok := privateaddr.AddressLiteral(to[strings.LastIndexByte(to, '@')+1:]); ok && privateaddr.Is(ip) {
			return s.refuse(errPrivateDestination(to, ip))
		}
	}
	for _, r := range s.rcpts {
		if strings.EqualFold(r, to) {
			return nil // a repeated recipient gets one copy
		}
	}
	if e := s.checkRecipient(to); e != nil {
		return s.refuse(e)
	}
	if len(s.rcpts) >= s.cfg.MaxRecipients {
		return s.refuse(errTooManyRecipients(s.cfg.MaxRecipients))
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.server == nil {
		return s.refuse(errAuthRequired())
	}
	if s.cfg.Foreground != nil {
		defer s.cfg.Foreground()()
	}
	// Reserve the message's bytes in the in-flight cap before reading
	// it into memory: the declared SIZE, else the largest allowed.
	want := s.cfg.MaxMessageBytes
	if s.size > 0 && s.size < want {
		want = s.size
	}
	// The 354 is held until the next read (ReplyBuffer); the client
	// should have it while this session waits for room.
	s.pc.flushReplies()
	held := s.srv.inflight.acquire(want, s.cfg.InflightWait)
	if held == 0 {
		return s.refuse(errBusy())
	}
	rr := &reservedReader{r: &lineLengthReader{r: r, max: s.cfg.MaxLineLength}, f: s.srv.inflight, wait: s.cfg.InflightWait, max: s.cfg.MaxMessageBytes, held: held}
	defer func() { s.srv.inflight.release(rr.held) }()
	var buf bytes.Buffer
	if s.size > 0 && s.size <= s.cfg.MaxMessageBytes {
		buf.Grow(int(s.size))
	}
	if _, err := buf.ReadFrom(rr); err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return s.refuse(errTooBig(s.cfg.MaxMessageBytes))
		}
		if errors.Is(err, errInflight) {
			return s.refuse(errBusy())
		}
		if errors.Is(err, errLineTooLong) {
			return s.refuse(errLongLine(s.cfg.MaxLineLength))
		}
		return s.refuse(&Error{Code: codeLocalError, Enhanced: smtp.EnhancedCode{4, 4, 2}, Message: "Error reading the message; try again", Cause: err, Reason: ReasonDataRead})
	}
	// Read: until its reply the message holds its buffer and the stamped
	// copy the intake makes, not max-message-size. A client that declared
	// no SIZE (most libraries) held 10 MiB through its commit, so 25
	// such sessions filled the default cap and the rest waited on their
	// commits.
	rr.keep(int64(buf.Cap()) + 2*int64(buf.Len()) + stampRoom)
	now := s.cfg.Now().UTC()
	id := store.NewMessageID()
	res, err := intake(buf.Bytes(), stamp{
		received:  s.receivedField(id, now),
		messageID: "<" + id + "@" + s.cfg.Hostname + ">",
		date:      now,
	})
	if err != nil {
		return s.refuse(errBadMessage(err.Error()))
	}
	stream, e := s.stream(res.stream)
	if e != nil {
		return s.refuse(e)
	}
	if e := s.checkStreamRecipients(stream); e != nil {
		return s.refuse(e)
	}
	if e := s.checkSender(res.fromFields); e != nil {
		return s.refuse(e)
	}
	for _, f := range res.senderFields {
		if e := s.checkOtherSenders(f.name, fieldAddresses(f.value)...); e != nil {
			return s.refuse(e)
		}
	}
	if e := s.checkLimits(); e != nil {
		return s.refuse(e)
	}
	if stream.UnsubscribeHandling == "Postmark" && s.cfg.UnsubscribeBase != "" && !res.hasListUnsubscribe {
		key, err := s.cfg.Store.InstallationKey()
		if err != nil {
			return s.refuse(errStorage(err))
		}
		res.stored = withUnsubscribe(res.stored, unsubscribe.Link(key, s.cfg.UnsubscribeBase,
			unsubscribe.Target{ServerID: s.server.ID, Stream: stream.ID, Email: s.rcpts[0], MessageID: id}))
	}
	msg := store.Message{
		MessageID:     id,
		ServerID:      s.server.ID,
		EnvelopeFrom:  s.from,
		From:          res.from,
		To:            storeAddresses(res.to),
		Cc:            storeAddresses(res.cc),
		Bcc:           storeAddresses(res.bcc),
		Recipients:    append([]string(nil), s.rcpts...),
		Subject:       res.subject,
		Tag:           res.tag,
		Metadata:      res.metadata,
		MessageStream: res.stream,
		ReceivedAt:    now,
		Size:          len(res.stored),
		Status:        store.StatusQueued,
	}
	if err := s.cfg.Store.Enqueue(store.Accept(*s.server, msg, res.stored)); err != nil {
		if errors.Is(err, store.ErrServerMissing) {
			return s.refuse(errServerGone())
		}
		// The limits are counted again as the message is filed, where
		// concurrent sessions, on any node, see each other's messages.
		var limit *store.LimitError
		if errors.As(err, &limit) {
			if limit.PerDay {
				return s.refuse(errDailyQuota(limit.Max))
			}
			return s.refuse(errRateLimit(limit.Max))
		}
		if errors.Is(err, syscall.ENOSPC) {
			return s.refuse(errNoSpace(err))
		}
		return s.refuse(errStorage(err))
	}
	s.pc.accepted()
	s.srv.metrics.accepted.WithLabelValues(serverLabel(s.server.ID)).Inc()
	if s.cfg.Accepted != nil {
		s.cfg.Accepted(s.server.ID, id)
	}
	if s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		s.cfg.Logger.Debug("message accepted", "server", s.server.ID, "message_id", id, "size", msg.Size, "recipients", msg.Recipients)
	}
	return replyQueued(id)
}

func (s *session) Reset() { s.from, s.size, s.rcpts = "", 0, s.rcpts[:0] }

func (s *session) Logout() error { return nil }

// receivedField is the Received field Postern adds (RFC 5321 §4.4): the
// client's HELO name and address, as every MTA records them, and nothing
// of its credentials.
func (s *session) receivedField(id string, now time.Time) string {
	with := "ESMTPA"
	tlsNote := ""
	if v, ok := s.tlsState(); ok {
		with = "ESMTPSA"
		tlsNote = " (" + v + ")"
	}
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (Postern) with %s%s id %s;\r\n\t%s",
		sanitizeHelo(s.c.Hostname()), s.clientIP(), s.cfg.Hostname, with, tlsNote, id, now.Format(time.RFC1123Z))
}

func storeAddresses(in []message.Address) []store.Address {
	if len(in) == 0 {
		return nil
	}
	out := make([]store.Address, len(in))
	for i, a := range in {
		out[i] = store.Address{Email: a.Email, Name: a.Name}
	}
	return out
}

// sanitizeHelo keeps the characters a host name or address literal may
// have, so a client cannot put anything else into the Received field.
func sanitizeHelo(helo string) string {
	var b strings.Builder
	for _, r := range helo {
		if b.Len() >= 255 {
			break
		}
		if r < 128 && (r == '.' || r == '-' || r == '_' || r == ':' || r == '[' || r == ']' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// validAddress checks the syntax of an envelope address leniently enough
// for real applications (UTF-8 allowed, as with SMTPUTF8) and strictly
// enough to refuse what cannot be delivered: one local part, an "@", and a
// domain of valid labels or an address literal.
func validAddress(a string) bool {
	if len(a) > 320 {
		return false
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || at > 64+2 {
		return false
	}
	local, domain := a[:at], a[at+1:]
	quoted, closed := local[0] == '"', false
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x20 || c == 0x7f {
			return false // also when quoted: a CR or LF would end the command
		}
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case !quoted && (c == ' ' || c == '@' || c == '"'):
			// Outside a quoted string these would make a second address
			// ("a@b@example.com") or one that cannot be parsed back.
			return false
		case quoted && i > 0 && c == '\\':
			i++ // a quoted pair: the next character is literal
		case quoted && i > 0 && c == '"':
			if i != len(local)-1 {
				return false // the quoted string ends before the local part
			}
			closed = true
		}
	}
	if quoted && !closed {
		return false
	}
	return domainname.ValidAddress(domain)
}
