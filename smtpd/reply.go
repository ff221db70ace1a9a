package smtpd

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/store"
)

// Reply codes Postern uses (RFC 5321 §4.2.3, RFC 4954, RFC 3463).
const (
	codeAuthOK            = 235
	codeOK                = 250
	codeClosing           = 421
	codeLocalError        = 451
	codeInsufficientSpace = 452
	codeTempAuthFailure   = 454
	codeSyntaxError       = 501
	codeBadSequence       = 503
	codeParamNotImpl      = 504
	codeAuthRequired      = 530
	codeAuthInvalid       = 535
	codeEncryptRequired   = 538
	codeMailboxUnavail    = 550
	codeExceededStorage   = 552
	codeTransactionFailed = 554
)

// Error is an SMTP refusal: the reply the client sees, and the cause that
// only the operator's log sees.
type Error struct {
	Code     int
	Enhanced smtp.EnhancedCode
	// Message is safe to show the client: it names no internal detail.
	Message string
	// Cause is why, for the log; never sent to the client.
	Cause error
	// Close asks for the connection to be closed once the reply is sent.
	Close bool
	// Reason is the refusal's reason label in metrics, one of
	// RefusalReasons ("" counts as ReasonOther).
	Reason string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Cause }

// Temporary reports whether the client may try again later (a 4xx reply).
func (e *Error) Temporary() bool { return e.Code/100 == 4 }

// smtpError is the form go-smtp writes as a reply: it type-asserts
// *smtp.SMTPError and does not unwrap.
func (e *Error) smtpError() *smtp.SMTPError {
	return &smtp.SMTPError{Code: e.Code, EnhancedCode: e.Enhanced, Message: e.Message}
}

func reply(code int, class, subject, detail int, msg string) *Error {
	return &Error{Code: code, Enhanced: smtp.EnhancedCode{class, subject, detail}, Message: msg}
}

// because sets the refusal's reason label.
func (e *Error) because(reason string) *Error {
	e.Reason = reason
	return e
}

// The replies of the design's SMTP table, and the few others Postern gives.
func errAuthInvalid() *Error {
	return reply(codeAuthInvalid, 5, 7, 8, "Authentication credentials invalid").because(ReasonAuthInvalid)
}

func errSMTPDisabled(server string) *Error {
	return reply(codeAuthInvalid, 5, 7, 8, fmt.Sprintf(
		"Authentication credentials invalid: SMTP is turned off for server %q; turn on SmtpApiActivated to send over SMTP", server)).because(ReasonSMTPDisabled)
}

func errTooManyFailures(until time.Time) *Error {
	e := reply(codeClosing, 4, 7, 0, fmt.Sprintf(
		"Too many failed authentication attempts from your address; try again after %s", until.UTC().Format("15:04:05 MST")))
	e.Close = true
	e.Reason = ReasonAuthThrottled
	return e
}

func errEncryptionRequired() *Error {
	return reply(codeEncryptRequired, 5, 7, 11, "Encryption required for requested authentication mechanism").because(ReasonEncryptionRequired)
}

func errAuthRequired() *Error {
	return reply(codeAuthRequired, 5, 7, 0, "Authentication required").because(ReasonAuthRequired)
}

func errCredentialsRevoked() *Error {
	return reply(codeAuthRequired, 5, 7, 0, "Authentication credentials no longer valid; authenticate again").because(ReasonAuthRevoked)
}

func errLongLine(limit int) *Error {
	return reply(codeTransactionFailed, 5, 6, 0, fmt.Sprintf("Message has a line longer than %d bytes", limit)).because(ReasonMalformed)
}

func errTooManyFromAddress() *Error {
	e := reply(codeClosing, 4, 7, 0, "Too many connections from your address")
	e.Close = true
	e.Reason = ReasonTooManyFromAddress
	return e
}

func errAlreadyAuthenticated() *Error {
	return reply(codeBadSequence, 5, 5, 1, "Already authenticated").because(ReasonBadSequence)
}

func errMechanism(mech string) *Error {
	return reply(codeParamNotImpl, 5, 5, 4, fmt.Sprintf("Unsupported authentication mechanism %q; use PLAIN or LOGIN", mech)).because(ReasonAuthMechanism)
}

func errAuthUnavailable(cause error) *Error {
	e := reply(codeTempAuthFailure, 4, 7, 0, "Temporary authentication failure; try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

func errBadSender() *Error {
	return reply(codeSyntaxError, 5, 1, 3, "Bad sender address syntax").because(ReasonSenderSyntax)
}

func errBadRecipient() *Error {
	return reply(codeSyntaxError, 5, 1, 3, "Bad recipient address syntax").because(ReasonRecipientSyntax)
}

func errPrivateDestination(rcpt string, ip netip.Addr) *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, fmt.Sprintf(
		"Recipient <%s> is at %s, a loopback, private or link-local address; Postern does not deliver there", rcpt, ip)).because(ReasonPrivateDestination)
}

func errTooManyRecipients(limit int) *Error {
	return reply(codeInsufficientSpace, 4, 5, 3, fmt.Sprintf("Too many recipients; at most %d per message", limit)).because(ReasonTooManyRecipients)
}

func errTooBig(limit int64) *Error {
	return reply(codeExceededStorage, 5, 3, 4, fmt.Sprintf("Message too big; the limit is %s (%d bytes)", byteSize(limit), limit)).because(ReasonTooBig)
}

func errUnknownStream(stream string) *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, fmt.Sprintf(
		"Message stream %q does not exist on this server, or is archived; remove X-PM-Message-Stream or use \"outbound\"", stream)).because(ReasonUnknownStream)
}

func errBadMessage(what string) *Error {
	return reply(codeTransactionFailed, 5, 6, 0, what).because(ReasonMalformed)
}

// Sender policy (see checkSender).
func errNoFrom() *Error {
	return reply(codeTransactionFailed, 5, 6, 0, "The message has no From header field; add one with the sender's address").because(ReasonMalformed)
}

func errManyFromFields(n int) *Error {
	return reply(codeTransactionFailed, 5, 6, 0, fmt.Sprintf("The message has %d From header fields; it must have exactly one", n)).because(ReasonMalformed)
}

func errBadFrom(why string) *Error {
	return reply(codeTransactionFailed, 5, 6, 0, fmt.Sprintf(
		"The From header field is not a valid address (%s); write it as \"Name <app@example.com>\"", why)).because(ReasonMalformed)
}

func errFromAddresses(n int) *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, fmt.Sprintf(
		"The From header field has %d addresses; it must have exactly one, at a domain of this account", n)).because(ReasonSenderDomain)
}

func errFromLiteral() *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, "The From address must be at a domain name of this account, not an address literal").because(ReasonSenderDomain)
}

// senderSubject names what carried a refused sender domain: the From
// field ("Sender domain", as the replies have always said) or another.
func senderSubject(field string) string {
	if field == "" {
		return "Sender domain"
	}
	return "The " + field + " domain"
}

func errSenderNotRegistered(field, domain string) *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, fmt.Sprintf(
		"%s %q is not registered for this account; add it with \"postern domain add %s\"", senderSubject(field), domain, domain)).because(ReasonSenderDomain)
}

func errSenderNotVerified(field, domain string) *Error {
	return reply(codeMailboxUnavail, 5, 7, 1, fmt.Sprintf(
		"%s %q is not verified: its DKIM records were not found in DNS; publish them, then run \"postern domain verify %s\"", senderSubject(field), domain, domain)).because(ReasonSenderDomain)
}

func errSenderCheck(cause error) *Error {
	e := reply(codeLocalError, 4, 3, 0, "Temporary failure checking the sender domain; the message was not accepted, try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

// Inactive recipients (see checkRecipient).
func errInactiveRecipient(rcpt string, sup store.Suppression) *Error {
	reason := sup.Reason
	if reason == "" {
		reason = "inactive"
	}
	return reply(codeMailboxUnavail, 5, 1, 1, fmt.Sprintf(
		"Recipient <%s> is inactive for this server: %s on %s; reactivate it to send again",
		rcpt, printable(reason), sup.Since.UTC().Format("2006-01-02"))).because(ReasonInactiveRecipient)
}

func errRecipientCheck(cause error) *Error {
	e := reply(codeLocalError, 4, 3, 0, "Temporary failure checking the recipient; try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

// printable keeps the printable ASCII of s (at most 64 bytes of it), for
// text from the store that goes into a reply line.
func printable(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Per-server limits (see checkLimits).
func errRateLimit(perMinute int) *Error {
	return reply(codeLocalError, 4, 7, 1, fmt.Sprintf(
		"Server rate limit of %d messages per minute reached; try again in a minute", perMinute)).because(ReasonRateLimit)
}

func errDailyQuota(perDay int) *Error {
	return reply(codeLocalError, 4, 7, 1, fmt.Sprintf(
		"Server daily quota of %d messages reached; it resets at 00:00 UTC", perDay)).because(ReasonQuota)
}

func errLimitCheck(cause error) *Error {
	e := reply(codeLocalError, 4, 3, 0, "Temporary failure checking the server's sending limits; try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

func errStorage(cause error) *Error {
	e := reply(codeLocalError, 4, 3, 0, "Temporary storage failure; the message was not accepted, try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

// errNoSpace is errStorage when the disk is full (ENOSPC): RFC 3463's
// 4.3.1, "mail system full".
func errNoSpace(cause error) *Error {
	e := reply(codeInsufficientSpace, 4, 3, 1, "Insufficient system storage; the message was not accepted, try again later")
	e.Cause = cause
	e.Reason = ReasonStorage
	return e
}

func errBusy() *Error {
	return reply(codeLocalError, 4, 3, 2, "System busy; too much mail in flight, try again later").because(ReasonBusy)
}

func errServerGone() *Error {
	return reply(codeLocalError, 4, 3, 0, "This server is no longer available; authenticate again").because(ReasonServerGone)
}

func errTooManySessions() *Error {
	return reply(codeClosing, 4, 3, 2, "Too many concurrent sessions; try again later").because(ReasonTooManySessions)
}

// Success replies. go-smtp writes fixed texts for these, so Postern hands
// them over in the shape of an error: go-smtp writes any *SMTPError it gets
// as the reply, whatever its code.
func replyAuthOK() *smtp.SMTPError {
	return &smtp.SMTPError{Code: codeAuthOK, EnhancedCode: smtp.EnhancedCode{2, 7, 0}, Message: "Authentication successful"}
}

func replyQueued(messageID string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: codeOK, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + messageID}
}

// byteSize says a size the way people read limits.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
