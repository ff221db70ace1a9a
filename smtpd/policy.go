package smtpd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

// SenderPolicy says which From domains a Live server may send from. Sandbox
// servers send nothing, so they may use any From.
type SenderPolicy int

const (
	// PolicyRegistered (the zero value) accepts a From address at a domain
	// of the server's account.
	PolicyRegistered SenderPolicy = iota
	// PolicyVerified also wants the domain's DKIM records found in DNS
	// (store.Domain.DKIMVerified).
	PolicyVerified
	// PolicyAny accepts any From, and does not look at it at all.
	PolicyAny
)

func (p SenderPolicy) String() string {
	switch p {
	case PolicyRegistered:
		return "registered"
	case PolicyVerified:
		return "verified"
	case PolicyAny:
		return "any"
	}
	return fmt.Sprintf("SenderPolicy(%d)", int(p))
}

// ParseSenderPolicy reads the names of the sender-policy setting.
func ParseSenderPolicy(name string) (SenderPolicy, error) {
	for _, p := range []SenderPolicy{PolicyRegistered, PolicyVerified, PolicyAny} {
		if name == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("smtpd: unknown sender policy %q (want registered, verified or any)", name)
}

// checkSender applies the sender policy to a message's From header fields
// (their unfolded values, as written). It runs at the end of DATA, the
// first moment the From header is known.
//
// Replies:
//   - no From field, several From fields (RFC 5322 §3.6 allows one), or
//     one that is not an address list: 554 5.6.0, the message is
//     malformed;
//   - a From with other than one address: 550 5.7.1, since which domain
//     would sign is then a guess;
//   - a domain that is not the account's (whether unknown or another
//     account's: the reply is the same, so it reveals nothing of other
//     accounts) or, under PolicyVerified, not verified: 550 5.7.1 naming
//     the domain and what to do;
//   - a store failure: 451 4.3.0.
func (s *session) checkSender(fromFields []string) *Error {
	if s.cfg.SenderPolicy == PolicyAny || s.server.DeliveryType == store.DeliverySandbox {
		return nil
	}
	switch len(fromFields) {
	case 0:
		return errNoFrom()
	case 1:
	default:
		return errManyFromFields(len(fromFields))
	}
	list, err := message.ParseAddresses(fromFields[0])
	if err != nil {
		return errBadFrom(strings.TrimPrefix(err.Error(), "mail: "))
	}
	if len(list) != 1 {
		return errFromAddresses(len(list))
	}
	addr := list[0].Address
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !validAddress(addr) {
		return errBadFrom("the address has no valid domain")
	}
	domain := domainname.Normalize(addr[at+1:])
	if strings.HasPrefix(domain, "[") {
		return errFromLiteral()
	}
	return s.checkSenderDomain("", domain)
}

// checkOtherSenders applies the sender policy to the other addresses that
// name who sent a message: the envelope sender (at MAIL, field "MAIL
// FROM") and, at the end of DATA, the Sender and Resent-From fields when
// present. Each must be at a domain of the account (verified, under
// PolicyVerified), or the message is refused with 550 5.7.1 naming the
// field: otherwise a tenant could put another organisation's domain in
// the return path or the Sender, which receivers show and judge. The
// null sender is allowed; fields that hold no address are left to the
// receiver, as they were before.
func (s *session) checkOtherSenders(field string, addrs ...string) *Error {
	if s.cfg.SenderPolicy == PolicyAny || s.server.DeliveryType == store.DeliverySandbox {
		return nil
	}
	for _, addr := range addrs {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			continue
		}
		if e := s.checkSenderDomain(field, domainname.Normalize(addr[at+1:])); e != nil {
			return e
		}
	}
	return nil
}

// fieldAddresses returns the addresses of an address-list field's value,
// or none when it is not one.
func fieldAddresses(value string) []string {
	list, err := message.ParseAddresses(value)
	if err != nil {
		return nil
	}
	addrs := make([]string, len(list))
	for i, a := range list {
		addrs[i] = a.Address
	}
	return addrs
}

// fieldMailFrom names the envelope sender in replies.
const fieldMailFrom = "MAIL FROM"

// checkSenderDomain refuses a domain that is not the account's or, under
// PolicyVerified, not verified. field is "" for From (whose replies stay
// as they were), else the field that named the domain.
func (s *session) checkSenderDomain(field, domain string) *Error {
	d, err := s.cfg.Store.DomainByName(domain)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return errSenderCheck(err)
	}
	if err != nil || d.AccountID != s.server.AccountID {
		s.cfg.Logger.Info("smtp sender refused", "remote", s.clientIP(), "server", s.server.ID, "domain", domain, "field", fieldOrFrom(field), "reason", "not a domain of the account")
		return errSenderNotRegistered(field, domain)
	}
	if s.cfg.SenderPolicy == PolicyVerified && !d.DKIMVerified {
		s.cfg.Logger.Info("smtp sender refused", "remote", s.clientIP(), "server", s.server.ID, "domain", domain, "field", fieldOrFrom(field), "reason", "DKIM records not verified")
		return errSenderNotVerified(field, domain)
	}
	return nil
}

func fieldOrFrom(field string) string {
	if field == "" {
		return "From"
	}
	return field
}

// checkRecipient refuses a recipient the server has made inactive (after a
// hard bounce, say): 550 5.1.1 with the reason and the date. Other servers
// keep their own lists.
func (s *session) checkRecipient(rcpt string) *Error {
	sup, found, err := s.cfg.Store.Suppressed(s.server.ID, rcpt)
	if errors.Is(err, store.ErrServerMissing) {
		return errServerGone()
	}
	if err != nil {
		return errRecipientCheck(err)
	}
	if !found {
		return nil
	}
	return errInactiveRecipient(rcpt, sup)
}
