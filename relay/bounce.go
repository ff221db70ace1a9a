package relay

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// Outcome is what became of one recipient in one delivery attempt. The
// names are those of Postmark's message events.
type Outcome int

const (
	// Delivered: the receiving server took responsibility (2xx).
	Delivered Outcome = iota + 1
	// Transient: not now, retry later (4xx, network failures, timeouts,
	// temporary DNS failures, and anything unexpected: a retry costs
	// little, a wrong bounce costs a recipient).
	Transient
	// Bounced: never (5xx, null MX, a domain that does not exist).
	Bounced
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "Delivered"
	case Transient:
		return "Transient"
	case Bounced:
		return "Bounced"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// BounceType is Postmark's kind of bounce; its value is Postmark's
// TypeCode and its String is Postmark's Type.
type BounceType int

const (
	BounceHard BounceType = 1 // the address does not exist
	// BounceTransient is for a recipient still deferred when its message
	// reaches the end of its lifetime; a single reply is never one.
	BounceTransient           BounceType = 2
	BounceDNSError            BounceType = 256 // the domain has no mail server
	BounceUnknown             BounceType = 2048
	BounceSoft                BounceType = 4096 // refused, but the address may work later (mailbox full, message too big)
	BounceBadEmailAddress     BounceType = 100000
	BounceSpamComplaint       BounceType = 100001
	BounceManuallyDeactivated BounceType = 100002
	BounceBlocked             BounceType = 100006 // refused by policy: spam filter, block list, reputation
	BounceSMTPAPIError        BounceType = 100007 // refused at intake, not by a receiving server
	BounceDMARCPolicy         BounceType = 100009
)

func (b BounceType) String() string {
	switch b {
	case BounceHard:
		return "HardBounce"
	case BounceTransient:
		return "Transient"
	case BounceDNSError:
		return "DnsError"
	case BounceUnknown:
		return "Unknown"
	case BounceSoft:
		return "SoftBounce"
	case BounceBadEmailAddress:
		return "BadEmailAddress"
	case BounceSpamComplaint:
		return "SpamComplaint"
	case BounceManuallyDeactivated:
		return "ManuallyDeactivated"
	case BounceBlocked:
		return "Blocked"
	case BounceSMTPAPIError:
		return "SMTPApiError"
	case BounceDMARCPolicy:
		return "DMARCPolicy"
	}
	return fmt.Sprintf("BounceType(%d)", int(b))
}

// Inactivates reports whether a bounce of this type makes the recipient
// inactive for the server that sent to it: sending again could not
// succeed, or must not happen until someone reactivates the address.
func (b BounceType) Inactivates() bool {
	switch b {
	case BounceHard, BounceBadEmailAddress, BounceSpamComplaint, BounceManuallyDeactivated:
		return true
	}
	return false
}

// EnhancedCode is an RFC 3463 status code: class, subject, detail. The
// zero value means the reply had none.
type EnhancedCode [3]int

func (e EnhancedCode) String() string {
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// Reply is an SMTP reply, or one Postern composes in the same form for a
// refusal it decides itself. Code 0 means no server replied (a network
// or DNS failure) and Text says what happened.
type Reply struct {
	Code     int
	Enhanced EnhancedCode
	Text     string
}

func (r Reply) String() string {
	switch {
	case r.Code == 0:
		return r.Text
	case r.Enhanced == EnhancedCode{}:
		return fmt.Sprintf("%d %s", r.Code, r.Text)
	}
	return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
}

// replyOf turns go-smtp's error into a Reply. go-smtp uses -1 in each
// place for "no enhanced code"; Reply uses the zero value.
func replyOf(e *smtp.SMTPError) Reply {
	r := Reply{Code: e.Code, Text: e.Message}
	if e.EnhancedCode != smtp.NoEnhancedCode {
		r.Enhanced = EnhancedCode(e.EnhancedCode)
	}
	return r
}

// Classification is the verdict on one recipient: the outcome and, for a
// bounce, its type.
type Classification struct {
	Outcome Outcome
	Bounce  BounceType // zero unless Outcome is Bounced
}

// ClassifyReply classifies a server's reply to a recipient.
func ClassifyReply(r Reply) Classification {
	switch {
	case r.Code >= 200 && r.Code <= 299:
		return Classification{Outcome: Delivered}
	case r.Code >= 500 && r.Code <= 599:
		return Classification{Outcome: Bounced, Bounce: bounceType(r)}
	}
	// 4xx, and what no server should answer (1xx, 3xx, nonsense).
	return Classification{Outcome: Transient}
}

// bounceType tells the kind of a 5xx reply: by its enhanced code where
// that is specific, else by words of its text, else by its basic code.
func bounceType(r Reply) BounceType {
	text := strings.ToLower(r.Text)
	if r.Enhanced[0] != 5 {
		// No enhanced code, or one contradicting the basic code: the
		// basic code decided the outcome, the text may tell the kind.
		if t, ok := bounceTypeOfText(text); ok {
			return t
		}
		switch r.Code {
		case 551: // user not local
			return BounceHard
		case 552: // exceeded storage allocation
			return BounceSoft
		case 553: // mailbox name not allowed
			return BounceBadEmailAddress
		}
		return BounceUnknown
	}
	switch subject, detail := r.Enhanced[1], r.Enhanced[2]; subject {
	case 1: // addressing
		switch detail {
		case 3:
			return BounceBadEmailAddress
		case 7, 8:
			// The sender's address is bad: no fault of the recipient's,
			// whose address must stay active.
			return BounceSoft
		}
		return BounceHard
	case 2, 3: // mailbox (full, disabled) and mail system (too big, not accepting)
		return BounceSoft
	case 4: // network and routing
		if detail == 4 { // unable to route: no such domain
			return BounceDNSError
		}
		return BounceSoft
	case 7: // security and policy
		if strings.Contains(text, "dmarc") {
			return BounceDMARCPolicy
		}
		return BounceBlocked
	}
	// 5.0.x, 5.5.x (protocol), 5.6.x (content): the code says too little.
	if t, ok := bounceTypeOfText(text); ok {
		return t
	}
	return BounceSoft
}

// Words of replies without a telling enhanced code, by the kind they
// mean, checked in this order. "mailbox unavailable" is not among them:
// RFC 5321 suggests it for every 550, policy refusals included.
var textHints = []struct {
	bounce BounceType
	words  []string
}{
	{BounceDMARCPolicy, []string{"dmarc"}},
	{BounceHard, []string{
		"user unknown", "unknown user", "no such user", "no such mailbox",
		"no such recipient", "unknown recipient", "recipient unknown",
		"recipient not found", "user not found", "mailbox not found",
		"invalid recipient", "does not exist", "doesn't exist",
		"unrouteable address",
	}},
	{BounceSoft, []string{
		"mailbox full", "mailbox is full", "over quota", "quota exceeded",
		"exceeded storage", "insufficient storage", "too large", "too big",
	}},
	{BounceBlocked, []string{
		"spam", "blocked", "blacklist", "blocklist", "block list",
		"denylist", "reputation", "policy",
	}},
}

func bounceTypeOfText(lower string) (BounceType, bool) {
	for _, h := range textHints {
		for _, w := range h.words {
			if strings.Contains(lower, w) {
				return h.bounce, true
			}
		}
	}
	return 0, false
}

// ClassifyError classifies a failure that stopped a delivery attempt
// before a server replied for a recipient, or the reply itself when err
// carries one. Only what is certain to fail forever bounces: a reply in
// 5xx, a null MX, a domain or record that does not exist. Connection
// failures, timeouts, TLS failures, temporary DNS failures and a host
// that refused the session (HostError) are Transient.
func ClassifyError(err error) Classification {
	var (
		hostErr *HostError
		smtpErr *smtp.SMTPError
	)
	switch {
	case errors.Is(err, ErrNullMX):
		return Classification{Outcome: Bounced, Bounce: BounceDNSError}
	case errors.As(err, &hostErr):
		// Even a 5xx greeting or a refused AUTH is about the host or our
		// configuration, not the recipient.
		return Classification{Outcome: Transient}
	case errors.As(err, &smtpErr):
		return ClassifyReply(replyOf(smtpErr))
	case isNotFound(err):
		return Classification{Outcome: Bounced, Bounce: BounceDNSError}
	}
	return Classification{Outcome: Transient}
}
