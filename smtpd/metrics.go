package smtpd

import (
	"crypto/tls"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons: the reason label of postern_messages_refused_total.
// The set is closed, so the label's cardinality is bounded: a refusal
// whose Error has no Reason counts as ReasonOther.
const (
	ReasonAuthRequired       = "auth_required"         // MAIL, RCPT or DATA before AUTH (530)
	ReasonAuthInvalid        = "auth_invalid"          // wrong token, account token, deleted server (535)
	ReasonSMTPDisabled       = "smtp_disabled"         // SmtpApiActivated false (535)
	ReasonAuthThrottled      = "auth_throttled"        // too many AUTH failures from the address (421)
	ReasonEncryptionRequired = "encryption_required"   // AUTH without TLS (538)
	ReasonAuthMechanism      = "auth_mechanism"        // unsupported SASL mechanism (504)
	ReasonBadSequence        = "bad_sequence"          // AUTH twice (503)
	ReasonSenderSyntax       = "sender_syntax"         // MAIL FROM address (501)
	ReasonRecipientSyntax    = "recipient_syntax"      // RCPT TO address (501)
	ReasonTooManyRecipients  = "too_many_recipients"   // over max-recipients (452)
	ReasonPrivateDestination = "private_destination"   // RCPT at a private address literal (550 5.7.1)
	ReasonInactiveRecipient  = "inactive_recipient"    // suppressed recipient (550 5.1.1)
	ReasonTooBig             = "too_big"               // over max-message-size (552)
	ReasonMalformed          = "malformed"             // unreadable header, From fields (554)
	ReasonUnknownStream      = "unknown_stream"        // X-PM-Message-Stream (550)
	ReasonSenderDomain       = "sender_domain"         // From domain not allowed (550 5.7.1)
	ReasonRateLimit          = "rate_limit"            // server over its send rate (451 4.7.1)
	ReasonQuota              = "quota"                 // server over its daily quota (451 4.7.1)
	ReasonStorage            = "storage"               // the store failed (451, 454)
	ReasonServerGone         = "server_gone"           // server deleted during the session (451)
	ReasonAuthRevoked        = "auth_revoked"          // token revoked or server deleted during the session, at MAIL (530)
	ReasonDataRead           = "data_read"             // the message could not be read (451 4.4.2)
	ReasonTooManySessions    = "too_many_sessions"     // over max-sessions, at connect (421)
	ReasonTooManyFromAddress = "too_many_from_address" // over max-sessions-per-ip, at connect (421 4.7.0)
	ReasonBusy               = "busy"                  // over max-inflight-bytes, at DATA (451 4.3.2)
	ReasonOther              = "other"
)

// RefusalReasons lists every value of the reason label.
var RefusalReasons = []string{
	ReasonAuthRequired, ReasonAuthInvalid, ReasonSMTPDisabled, ReasonAuthThrottled,
	ReasonEncryptionRequired, ReasonAuthMechanism, ReasonBadSequence, ReasonSenderSyntax,
	ReasonRecipientSyntax, ReasonPrivateDestination, ReasonTooManyRecipients, ReasonInactiveRecipient, ReasonTooBig,
	ReasonMalformed, ReasonUnknownStream, ReasonSenderDomain, ReasonRateLimit, ReasonQuota,
	ReasonStorage, ReasonServerGone, ReasonAuthRevoked, ReasonDataRead, ReasonTooManySessions, ReasonTooManyFromAddress, ReasonBusy, ReasonOther,
}

// TLSVersions lists every value of the version label of
// postern_smtp_tls_handshakes_total.
var TLSVersions = []string{"TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"}

// NoServer is the server label of refusals before a successful AUTH.
const NoServer = "none"

// metrics are the SMTP listener's. Without a Registerer they are still
// made, and counted, but nobody sees them: the code needs no nil checks.
type metrics struct {
	accepted      *prometheus.CounterVec // server
	refused       *prometheus.CounterVec // server, reason
	sessionsOpen  prometheus.Gauge
	sessionsTotal prometheus.Counter
	authFailures  prometheus.Counter
	tlsHandshakes *prometheus.CounterVec // version
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_messages_accepted_total",
			Help: "Messages accepted over SMTP (committed to the store and answered 250), by server ID.",
		}, []string{"server"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_messages_refused_total",
			Help: `SMTP refusals (a 4xx or 5xx reply to AUTH, MAIL, RCPT or DATA, or a connection over the session limit), by server ID ("none" before AUTH) and reason.`,
		}, []string{"server", "reason"}),
		sessionsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postern_smtp_sessions_open",
			Help: "SMTP connections open now.",
		}),
		sessionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postern_smtp_sessions_total",
			Help: "SMTP connections accepted (those over the session limit are refusals, not sessions).",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postern_smtp_auth_failures_total",
			Help: "Failed SMTP AUTH attempts: unknown token, account token, token of a deleted server.",
		}),
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_smtp_tls_handshakes_total",
			Help: "TLS handshakes of SMTP clients (STARTTLS and implicit TLS), by protocol version.",
		}, []string{"version"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.accepted, m.refused, m.sessionsOpen, m.sessionsTotal, m.authFailures, m.tlsHandshakes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// serverLabel is the server label of a session's server (nil before AUTH).
func serverLabel(id int64) string {
	if id == 0 {
		return NoServer
	}
	return strconv.FormatInt(id, 10)
}

// reasonLabel keeps the reason label within RefusalReasons.
func reasonLabel(reason string) string {
	for _, r := range RefusalReasons {
		if r == reason {
			return r
		}
	}
	return ReasonOther
}

// tlsVersionLabel keeps the version label within TLSVersions.
func tlsVersionLabel(v uint16) string {
	switch v {
	case tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
		return tls2string(v)
	}
	return "other"
}

// countHandshakes returns a copy of c that counts each completed server
// handshake. VerifyConnection runs at the end of every handshake, full
// or resumed, whether or not a client certificate was asked for; both
// STARTTLS (inside go-smtp) and implicit TLS use this one configuration.
func (m *metrics) countHandshakes(c *tls.Config) *tls.Config {
	if c == nil {
		return nil
	}
	c = c.Clone()
	next := c.VerifyConnection
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if next != nil {
			if err := next(cs); err != nil {
				return err
			}
		}
		m.tlsHandshakes.WithLabelValues(tlsVersionLabel(cs.Version)).Inc()
		return nil
	}
	return c
}
