package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

var (
	bucketDomains      = []byte("domains")      // ID → Domain
	bucketDomainNames  = []byte("domainnames")  // name → ID of the account that holds it
	bucketDomainClaims = []byte("domainclaims") // name 0 ID → empty: claims on a held name
)

func claimKey(name string, id int64) []byte { return append([]byte(name+"\x00"), itob(id)...) }

// CreateDomain adds a sending domain to an account. A name another
// account (or this one) already has is refused with ErrDuplicate.
func (s *Store) CreateDomain(d store.Domain, now time.Time) (store.Domain, error) {
	d.Name = domainname.Normalize(d.Name)
	if d.Name == "" {
		return store.Domain{}, fmt.Errorf("store: domain without a name")
	}
	err := s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(itob(d.AccountID)) == nil {
			return fmt.Errorf("store: account %d: %w", d.AccountID, store.ErrNotFound)
		}
		names := tx.Bucket(bucketDomainNames)
		b := tx.Bucket(bucketDomains)
		var holder *store.Domain
		claimed := false
		if holderID := names.Get([]byte(d.Name)); holderID != nil {
			holder = &store.Domain{}
			if err := getJSON(b, holderID, holder); err != nil {
				return err
			}
			if err := forClaims(tx, d.Name, func(c store.Domain) { claimed = claimed || c.AccountID == d.AccountID }); err != nil {
				return err
			}
		}
		var err error
		if d.Claim, err = store.Claiming(d.AccountID, holder, claimed); err != nil {
			return err
		}
		if err := capPerAccount(b, d.AccountID, s.opts.Caps.DomainsPerAccount, "max-domains-per-account", "domains per account"); err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		d.ID, d.CreatedAt = int64(seq), now.UTC()
		if d.Claim {
			err = tx.Bucket(bucketDomainClaims).Put(claimKey(d.Name, d.ID), nil)
		} else {
			err = names.Put([]byte(d.Name), itob(d.ID))
		}
		if err != nil {
			return err
		}
		return putJSON(b, itob(d.ID), d)
	})
	return d, err
}

// VerifiedDomains returns every verified domain of the installation, for
// their daily re-verification.
func (s *Store) VerifiedDomains() ([]store.Domain, error) {
	var out []store.Domain
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		return tx.Bucket(bucketDomainNames).ForEach(func(_, id []byte) error {
			var d store.Domain
			if err := getJSON(b, id, &d); err != nil {
				return err
			}
			if d.DKIMVerified {
				out = append(out, d)
			}
			return nil
		})
	})
	return out, err
}

// Reverified records a re-verification of a verified domain: found, its
// records were in DNS. A domain whose records have been missing for
// failFor in a row loses its verification, with an event in its
// account's log, and may then be claimed by another account that proves
// it. It returns the domain as stored.
func (s *Store) Reverified(id int64, found bool, now time.Time, failFor time.Duration) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		d = store.Domain{}
		if err := getJSON(b, itob(id), &d); err != nil {
			return err
		}
		if !d.DKIMVerified {
			return nil
		}
		if lost := store.Reverify(&d, found, now, failFor); lost != nil {
			if err := addAccountEvent(tx, d.AccountID, *lost); err != nil {
				return err
			}
		}
		return putJSON(b, itob(id), d)
	})
	return d, err
}

// forClaims calls fn with each claim on name.
func forClaims(tx *bbolt.Tx, name string, fn func(store.Domain)) error {
	prefix := []byte(name + "\x00")
	c := tx.Bucket(bucketDomainClaims).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		var d store.Domain
		if err := getJSON(tx.Bucket(bucketDomains), k[len(prefix):], &d); err != nil {
			return err
		}
		fn(d)
	}
	return nil
}

// TakeDomain gives a claim's name to its account, once the claim's DKIM
// records were found in DNS: the claim becomes the verified domain of
// that name, and the holder's unproven record is removed, with an event
// in the holder's account log saying so. A holder that has proven the
// name meanwhile keeps it (ErrDomainProven); the claim stays.
func (s *Store) TakeDomain(id int64, now time.Time) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(tx *bbolt.Tx) error {
		b, names := tx.Bucket(bucketDomains), tx.Bucket(bucketDomainNames)
		d = store.Domain{}
		if err := getJSON(b, itob(id), &d); err != nil {
			return err
		}
		holderID := names.Get([]byte(d.Name))
		var holder *store.Domain
		if holderID != nil {
			holder = &store.Domain{}
			if err := getJSON(b, holderID, holder); err != nil {
				return err
			}
		}
		lost, err := store.Taken(&d, holder, now)
		if err != nil {
			return err
		}
		if holder != nil {
			if err := b.Delete(holderID); err != nil {
				return err
			}
			if err := addAccountEvent(tx, holder.AccountID, *lost); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDomainClaims).Delete(claimKey(d.Name, d.ID)); err != nil {
			return err
		}
		if err := names.Put([]byte(d.Name), itob(d.ID)); err != nil {
			return err
		}
		return putJSON(b, itob(d.ID), d)
	})
	return d, err
}

// DomainByName returns the domain named name, whichever account has it.
func (s *Store) DomainByName(name string) (store.Domain, error) {
	var d store.Domain
	err := s.view(func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketDomainNames).Get([]byte(domainname.Normalize(name)))
		if id == nil {
			return store.ErrNotFound
		}
		raw := tx.Bucket(bucketDomains).Get(id)
		if raw == nil {
			return store.ErrNotFound
		}
		var err error
		d, err = s.domains.decode(id, raw)
		return err
	})
	return d, err
}

// Domains returns an account's domains, claims included, by name.
func (s *Store) Domains(accountID int64) ([]store.Domain, error) {
	var out []store.Domain
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDomains).ForEach(func(_, v []byte) error {
			var d store.Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.AccountID == accountID {
				out = append(out, d)
			}
			return nil
		})
	})
	slices.SortFunc(out, func(a, b store.Domain) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

// UpdateDomain replaces a domain's keys, verification state and return
// path; its account, name and creation time stay.
func (s *Store) UpdateDomain(d store.Domain) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		var prev store.Domain
		if err := getJSON(b, itob(d.ID), &prev); err != nil {
			return err
		}
		return putJSON(b, itob(d.ID), store.UpdatedDomain(prev, d))
	})
}

// Domain returns one domain by ID, whichever account has it: callers
// that act for an account compare AccountID.
func (s *Store) Domain(id int64) (store.Domain, error) {
	var d store.Domain
	err := s.view(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketDomains), itob(id), &d)
	})
	return d, err
}

// ModifyDomain reads a domain, lets fn change it and writes it back, all
// in one transaction, so that two changes at once (a verification and a
// rotation, say) cannot undo each other. fn sees the stored domain; an
// error from it aborts and is returned as it is. ID, AccountID, Name and
// CreatedAt cannot be changed.
func (s *Store) ModifyDomain(id int64, fn func(*store.Domain) error) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		d = store.Domain{}
		if err := getJSON(b, itob(id), &d); err != nil {
			return err
		}
		prev := d
		if err := fn(&d); err != nil {
			return err
		}
		d = store.UpdatedDomain(prev, d)
		return putJSON(b, itob(id), d)
	})
	return d, err
}

// DeleteDomain removes a domain and its name, so the name can be
// registered again (by any account). Mail already signed with its keys
// keeps its signatures; later mail from it goes unsigned.
func (s *Store) DeleteDomain(id int64) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketDomains)
		var d store.Domain
		if err := getJSON(b, itob(id), &d); err != nil {
			return err
		}
		names := tx.Bucket(bucketDomainNames)
		if got := names.Get([]byte(d.Name)); got != nil && string(got) == string(itob(id)) {
			if err := names.Delete([]byte(d.Name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketDomainClaims).Delete(claimKey(d.Name, d.ID)); err != nil {
			return err
		}
		if err := deleteDMARC(tx, id); err != nil {
			return err
		}
		return b.Delete(itob(id))
	})
}

// QueuedSignatureBy reports whether a queued message carries a DKIM
// signature of domain made with one of selectors: such a message is
// still retried with it, so its key's TXT record must stay in DNS.
func (s *Store) QueuedSignatureBy(domain string, selectors []string) (bool, error) {
	if len(selectors) == 0 {
		return false, nil
	}
	domain = domainname.Normalize(domain)
	found := false
	err := s.view(func(tx *bbolt.Tx) error {
		queue := tx.Bucket(bucketQueue)
		return queue.ForEachBucket(func(k []byte) error {
			return queue.Bucket(k).ForEach(func(_, v []byte) error {
				var e store.QueueEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				if len(e.Signature) > 0 && store.SignedBy(e.Signature, domain, selectors) {
					found = true
					return errStop
				}
				return nil
			})
		})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

var errStop = errors.New("stop")

// checkDomains verifies that every domain's name is indexed to it, its
// account exists, and every name in the index names a domain of that
// name.
func checkDomains(tx *bbolt.Tx) []error {
	var problems []error
	domains, names, accounts := tx.Bucket(bucketDomains), tx.Bucket(bucketDomainNames), tx.Bucket(bucketAccounts)
	_ = domains.ForEach(func(k, v []byte) error {
		var d store.Domain
		if err := json.Unmarshal(v, &d); err != nil {
			problems = append(problems, fmt.Errorf("domain %x: %w", k, err))
			return nil
		}
		if string(itob(d.ID)) != string(k) {
			problems = append(problems, fmt.Errorf("domain %x: holds ID %d", k, d.ID))
		}
		if d.Claim {
			if tx.Bucket(bucketDomainClaims).Get(claimKey(d.Name, d.ID)) == nil {
				problems = append(problems, fmt.Errorf("domain %d (%s): a claim not in the claim index", d.ID, d.Name))
			}
		} else if got := names.Get([]byte(d.Name)); got == nil || string(got) != string(k) {
			problems = append(problems, fmt.Errorf("domain %d (%s): not in the name index", d.ID, d.Name))
		}
		if accounts.Get(itob(d.AccountID)) == nil {
			problems = append(problems, fmt.Errorf("domain %d (%s): account %d missing", d.ID, d.Name, d.AccountID))
		}
		return nil
	})
	_ = names.ForEach(func(name, id []byte) error {
		var d store.Domain
		if err := getJSON(domains, id, &d); err != nil {
			problems = append(problems, fmt.Errorf("domain name %s: no domain %x", name, id))
		} else if d.Name != string(name) {
			problems = append(problems, fmt.Errorf("domain name %s: names domain %d (%s)", name, d.ID, d.Name))
		}
		return nil
	})
	return problems
}

var bucketSuppressed = []byte("suppressed")

// Suppressed returns a server's suppression of email, if there is one.
func (s *Store) Suppressed(serverID int64, email string) (store.Suppression, bool, error) {
	var sup store.Suppression
	found := false
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrServerMissing
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
	return s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrServerMissing
		}
		b := mail.Bucket(bucketSuppressed)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(strings.ToLower(email)))
	})
}
