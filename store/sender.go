package store

import (
	"errors"
	"fmt"
)

// SenderPolicy says which From domains a Live server may send from, over
// SMTP and over the HTTP API alike. Sandbox servers send nothing, so they
// may use any From.
type SenderPolicy int

const (
	// PolicyRegistered (the zero value) accepts a From address at a domain
	// of the server's account.
	PolicyRegistered SenderPolicy = iota
	// PolicyVerified also wants the domain's DKIM records found in DNS
	// (Domain.DKIMVerified).
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
	return 0, fmt.Errorf("unknown sender policy %q (want registered, verified or any)", name)
}

// Refusals of CheckSenderDomain.
var (
	// ErrSenderNotRegistered: the domain is no domain of the server's
	// account. Another account's domain gets the same answer as an unknown
	// one, so nothing is learnt of other accounts.
	ErrSenderNotRegistered = errors.New("the sender domain is not a domain of this account")
	// ErrSenderNotVerified: the account's domain, but its DKIM records were
	// not found in DNS, under PolicyVerified.
	ErrSenderNotVerified = errors.New("the sender domain's DKIM records are not verified")
)

// Checks reports whether the policy looks at senders of srv at all.
func (p SenderPolicy) Checks(srv Server) bool {
	return p != PolicyAny && srv.DeliveryType != DeliverySandbox
}

// CheckSenderDomain decides whether srv may send from a domain, given
// what DomainByName answered for it: nil, ErrSenderNotRegistered,
// ErrSenderNotVerified, or the lookup's own failure.
func (p SenderPolicy) CheckSenderDomain(srv Server, d Domain, lookupErr error) error {
	switch {
	case !p.Checks(srv):
		return nil
	case errors.Is(lookupErr, ErrNotFound):
		return ErrSenderNotRegistered
	case lookupErr != nil:
		return lookupErr
	case d.AccountID != srv.AccountID:
		return ErrSenderNotRegistered
	case p == PolicyVerified && !d.DKIMVerified:
		return ErrSenderNotVerified
	}
	return nil
}
