package store

import (
	"errors"
	"time"
)

// DKIMKey is one of a domain's signing keys and the DNS record that
// publishes its public half. The private key never leaves the store but
// as signatures.
type DKIMKey struct {
	Algorithm  string // "ed25519" or "rsa"
	Selector   string
	PrivateKey []byte // PKCS#8, DER
	Host       string // <selector>._domainkey.<domain>
	TextValue  string // v=DKIM1; k=...; p=...
}

// Domain is a sending domain. It belongs to one account; its name is
// unique in the installation.
//
// A DKIM key rotation goes through three sets of keys: Keys, the active
// ones, which the relay signs with; PendingKeys, made by a rotation and
// waiting for their TXT records to be found in DNS; and RevokedKeys, the
// keys that were active before the last rotation completed. Only Keys are
// ever signed with. Revoked keys keep their records (so that people know
// which ones to remove from DNS) but not their private halves.
type Domain struct {
	ID           int64
	AccountID    int64
	Name         string // lower case, no trailing dot
	Keys         []DKIMKey
	PendingKeys  []DKIMKey `json:",omitempty"`
	RevokedKeys  []DKIMKey `json:",omitempty"`
	RevokedAt    time.Time `json:",omitzero"` // when RevokedKeys stopped being signed with
	DKIMVerified bool      // the keys' TXT records were found in DNS
	VerifiedAt   time.Time
	// ReturnPathDomain is the custom Return-Path domain a client asked for
	// (Postmark's field); empty when none.
	ReturnPathDomain string `json:",omitempty"`
	// ReturnPathVerified: the Return-Path domain's CNAME was found
	// pointing at the inbound listener's domain (verifyReturnPath); the
	// relay then sends the domain's mail with return paths on it. A
	// change of ReturnPathDomain clears it.
	ReturnPathVerified bool `json:",omitempty"`
	CreatedAt          time.Time
	// Claim: the name is another account's, which has not proven it in
	// DNS; this record claims it, and takes it (TakeDomain) when its own
	// DKIM records are found first. A claim signs nothing and is not the
	// domain the sender policy finds.
	Claim bool `json:",omitempty"`
	// FailingSince: a verified domain's records have not been found by
	// the daily re-verification since then (zero while they are).
	FailingSince time.Time `json:",omitzero"`
}

// ErrDomainProven refuses a claim on a name whose holder has proven it
// in DNS: a verified domain stays with its account.
var ErrDomainProven = errors.New("store: the domain is verified by the account that holds it")

// Suppression is a recipient a server no longer sends to, and why.
type Suppression struct {
	Email     string
	Reason    string // the bounce type that made it inactive, e.g. HardBounce
	Since     time.Time
	MessageID string // the message whose bounce suppressed it
	Details   string // the remote server's reply
}
