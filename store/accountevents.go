package store

import (
	"time"
)

// AccountEvent is one entry of an account's log.
type AccountEvent struct {
	At      time.Time
	Type    string // AccountEventDomainLost, ...
	Domain  string `json:",omitempty"`
	Message string
}

// Types of AccountEvent.
const (
	// AccountEventDomainLost: an unproven domain of the account went to
	// another account that proved it in DNS (TakeDomain).
	AccountEventDomainLost = "DomainLost"
	// AccountEventDomainUnverified: a verified domain's DKIM records were
	// not found for domain-reverify-days in a row.
	AccountEventDomainUnverified = "DomainUnverified"
)
