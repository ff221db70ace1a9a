package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
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
type Domain struct {
	ID           int64
	AccountID    int64
	Name         string // lower case, no trailing dot
	Keys         []DKIMKey
	DKIMVerified bool // the keys' TXT records were found in DNS
	VerifiedAt   time.Time
	CreatedAt    time.Time
}

var (
	bucketDomains     = []byte("domains")     // ID → Domain
	bucketDomainNames = []byte("domainnames") // name → ID
)

// NormalizeDomain is the form domain names are stored and looked up in.
func NormalizeDomain(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// CreateDomain adds a sending domain to an account. A name another
// account (or this one) already has is refused with ErrDuplicate.
func (s *Store) CreateDomain(d Domain, now time.Time) (Domain, error) {
	d.Name = NormalizeDomain(d.Name)
	if d.Name == "" {
		return Domain{}, fmt.Errorf("store: domain without a name")
	}
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(itob(d.AccountID)) == nil {
			return fmt.Errorf("store: account %d: %w", d.AccountID, ErrNotFound)
		}
		names := tx.Bucket(bucketDomainNames)
		if names.Get([]byte(d.Name)) != nil {
			return fmt.Errorf("store: domain %s: %w", d.Name, ErrDuplicate)
		}
		b := tx.Bucket(bucketDomains)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		d.ID, d.CreatedAt = int64(seq), now.UTC()
		if err := names.Put([]byte(d.Name), itob(d.ID)); err != nil {
			return err
		}
		return putJSON(b, itob(d.ID), d)
	})
	return d, err
}

// DomainByName returns the domain named name, whichever account has it.
func (s *Store) DomainByName(name string) (Domain, error) {
	var d Domain
	err := s.view(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketDomainNames).Get([]byte(NormalizeDomain(name)))
		if id == nil {
			return ErrNotFound
		}
		return getJSON(tx.Bucket(bucketDomains), id, &d)
	})
	return d, err
}

// Domains returns an account's domains, by name.
func (s *Store) Domains(accountID int64) ([]Domain, error) {
	var out []Domain
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		return tx.Bucket(bucketDomainNames).ForEach(func(_, id []byte) error {
			var d Domain
			if err := getJSON(b, id, &d); err != nil {
				return err
			}
			if d.AccountID == accountID {
				out = append(out, d)
			}
			return nil
		})
	})
	return out, err
}

// UpdateDomain replaces a domain's keys and verification state.
func (s *Store) UpdateDomain(d Domain) error {
	return s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		var prev Domain
		if err := getJSON(b, itob(d.ID), &prev); err != nil {
			return err
		}
		d.AccountID, d.Name, d.CreatedAt = prev.AccountID, prev.Name, prev.CreatedAt
		return putJSON(b, itob(d.ID), d)
	})
}

// Suppression is a recipient a server no longer sends to, and why.
type Suppression struct {
	Email     string
	Reason    string // the bounce type that made it inactive, e.g. HardBounce
	Since     time.Time
	MessageID string // the message whose bounce suppressed it
	Details   string // the remote server's reply
}

var bucketSuppressed = []byte("suppressed") // in a server's mail bucket: email → Suppression

// Suppressed returns a server's suppression of email, if there is one.
func (s *Store) Suppressed(serverID int64, email string) (Suppression, bool, error) {
	var sup Suppression
	found := false
	err := s.view(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrServerMissing
		}
		b := mail.Bucket(bucketSuppressed)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(strings.ToLower(email)))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &sup)
	})
	return sup, found, err
}

// Unsuppress makes a recipient active again for a server.
func (s *Store) Unsuppress(serverID int64, email string) error {
	return s.update(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrServerMissing
		}
		b := mail.Bucket(bucketSuppressed)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(strings.ToLower(email)))
	})
}
