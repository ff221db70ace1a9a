package smtpd

import (
	"errors"
	"strings"

	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

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
	if !s.cfg.SenderPolicy.Checks(*s.server) {
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
	if !s.cfg.SenderPolicy.Checks(*s.server) {
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
	switch err := s.cfg.SenderPolicy.CheckSenderDomain(*s.server, d, err); {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrSenderNotRegistered):
		s.cfg.Logger.Info("smtp sender refused", "remote", s.clientIP(), "server", s.server.ID, "domain", domain, "field", fieldOrFrom(field), "reason", "not a domain of the account")
		return errSenderNotRegistered(field, domain)
	case errors.Is(err, store.ErrSenderNotVerified):
		s.cfg.Logger.Info("smtp sender refused", "remote", s.clientIP(), "server", s.server.ID, "domain", domain, "field", fieldOrFrom(field), "reason", "DKIM records not verified")
		return errSenderNotVerified(field, domain)
	default:
		return errSenderCheck(err)
	}
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
