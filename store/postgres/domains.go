package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/domainname"
	"github.com/postern/postern/store"
)

// lockName serialises, until the transaction ends, the transactions that
// decide who holds or claims a name: a transaction-scoped advisory lock,
// since the row deciding it may not exist yet.
func lockName(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('postern domain ' || $1))`, name)
	return err
}

func putDomain(ctx context.Context, tx pgx.Tx, d store.Domain) error {
	doc, err := marshal(d)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE domains SET claim = $2, doc = $3 WHERE id = $1`, d.ID, d.Claim, doc)
	return err
}

// holder returns the domain holding name, nil when none does.
func holder(ctx context.Context, tx pgx.Tx, name string) (*store.Domain, error) {
	list, err := docs[store.Domain](ctx, tx, `SELECT doc FROM domains WHERE name = $1 AND NOT claim`, name)
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}

// CreateDomain adds a domain to an account, as its holder or as a claim
// on a name another account holds (store.Claiming), within the cap.
func (s *Store) CreateDomain(d store.Domain, now time.Time) (store.Domain, error) {
	d.Name = domainname.Normalize(d.Name)
	if d.Name == "" {
		return store.Domain{}, fmt.Errorf("store: domain without a name")
	}
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, d.AccountID); err != nil {
			return err
		}
		if err := lockName(ctx, tx, d.Name); err != nil {
			return err
		}
		h, err := holder(ctx, tx, d.Name)
		if err != nil {
			return err
		}
		claimed := false
		if h != nil {
			if claimed, err = exists(ctx, tx, `SELECT 1 FROM domains WHERE name = $1 AND claim AND account_id = $2`, d.Name, d.AccountID); err != nil {
				return err
			}
		}
		if d.Claim, err = store.Claiming(d.AccountID, h, claimed); err != nil {
			return err
		}
		if err := capPerAccount(ctx, tx, "domains", d.AccountID, s.opts.Caps.DomainsPerAccount, "max-domains-per-account", "domains per account"); err != nil {
			return err
		}
		d.CreatedAt = now.UTC()
		if err := tx.QueryRow(ctx, `INSERT INTO domains (account_id, name, claim, doc) VALUES ($1, $2, $3, '{}') RETURNING id`,
			d.AccountID, d.Name, d.Claim).Scan(&d.ID); err != nil {
			if isUnique(err, "") {
				return fmt.Errorf("store: domain %s: %w", d.Name, store.ErrDuplicate)
			}
			return err
		}
		return putDomain(ctx, tx, d)
	})
	return d, err
}

// VerifiedDomains returns every held domain whose records were found.
func (s *Store) VerifiedDomains() ([]store.Domain, error) {
	return viewDocs[store.Domain](s, `SELECT doc FROM domains WHERE NOT claim AND (doc->>'DKIMVerified')::boolean ORDER BY id`)
}

// Reverified records the daily check of a verified domain (store.Reverify).
func (s *Store) Reverified(id int64, found bool, now time.Time, failFor time.Duration) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		d = store.Domain{}
		if err := getDoc(ctx, tx, &d, `SELECT doc FROM domains WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		if !d.DKIMVerified {
			return nil
		}
		if lost := store.Reverify(&d, found, now, failFor); lost != nil {
			if err := addAccountEvent(ctx, tx, d.AccountID, *lost); err != nil {
				return err
			}
		}
		return putDomain(ctx, tx, d)
	})
	return d, err
}

// TakeDomain makes a claim its name's holder (store.Taken).
func (s *Store) TakeDomain(id int64, now time.Time) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		d = store.Domain{}
		if err := getDoc(ctx, tx, &d, `SELECT doc FROM domains WHERE id = $1`, id); err != nil {
			return err
		}
		if err := lockName(ctx, tx, d.Name); err != nil {
			return err
		}
		if err := getDoc(ctx, tx, &d, `SELECT doc FROM domains WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		h, err := holder(ctx, tx, d.Name)
		if err != nil {
			return err
		}
		lost, err := store.Taken(&d, h, now)
		if err != nil {
			return err
		}
		if h != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, h.ID); err != nil {
				return err
			}
			if err := addAccountEvent(ctx, tx, h.AccountID, *lost); err != nil {
				return err
			}
		}
		return putDomain(ctx, tx, d)
	})
	return d, err
}

// DomainByName returns the domain holding name.
func (s *Store) DomainByName(name string) (store.Domain, error) {
	var d store.Domain
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &d, `SELECT doc FROM domains WHERE name = $1 AND NOT claim`, domainname.Normalize(name))
	})
	return d, err
}

// Domains returns the account's domains and claims, by name.
func (s *Store) Domains(accountID int64) ([]store.Domain, error) {
	return viewDocs[store.Domain](s, `SELECT doc FROM domains WHERE account_id = $1 ORDER BY name, id`, accountID)
}

// Domain returns a domain.
func (s *Store) Domain(id int64) (store.Domain, error) {
	var d store.Domain
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		return getDoc(ctx, tx, &d, `SELECT doc FROM domains WHERE id = $1`, id)
	})
	return d, err
}

// UpdateDomain stores an edit of a domain (store.UpdatedDomain).
func (s *Store) UpdateDomain(d store.Domain) error {
	_, err := s.ModifyDomain(d.ID, func(cur *store.Domain) error {
		*cur = d
		return nil
	})
	return err
}

// ModifyDomain runs fn on the domain in one transaction.
func (s *Store) ModifyDomain(id int64, fn func(*store.Domain) error) (store.Domain, error) {
	var d store.Domain
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		var prev store.Domain
		if err := getDoc(ctx, tx, &prev, `SELECT doc FROM domains WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		d = prev
		if err := fn(&d); err != nil {
			return err
		}
		d = store.UpdatedDomain(prev, d)
		d.Claim = prev.Claim
		return putDomain(ctx, tx, d)
	})
	return d, err
}

// DeleteDomain deletes a domain or a claim.
func (s *Store) DeleteDomain(id int64) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, id)
		if err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// QueuedSignatureBy reports whether a queued entry holds a signature by
// domain with one of selectors (store.SignedBy).
func (s *Store) QueuedSignatureBy(domain string, selectors []string) (bool, error) {
	if len(selectors) == 0 {
		return false, nil
	}
	domain = domainname.Normalize(domain)
	found := false
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		// The signature is base64 in the doc; decoded rows are read in
		// Go, only those signed at all.
		list, err := docs[store.QueueEntry](ctx, tx, `SELECT doc FROM queue WHERE doc->>'Signature' IS NOT NULL`)
		if err != nil {
			return err
		}
		for _, e := range list {
			if len(e.Signature) > 0 && store.SignedBy(e.Signature, domain, selectors) {
				found = true
				return nil
			}
		}
		return nil
	})
	return found, err
}

// Suppressed reports whether the server made the address inactive; it
// runs at every RCPT, so it is one statement.
func (s *Store) Suppressed(serverID int64, email string) (store.Suppression, bool, error) {
	var sup store.Suppression
	found := false
	err := s.readOne(func(ctx context.Context, q querier) error {
		var raw []byte
		var server bool
		if err := q.QueryRow(ctx, `SELECT (SELECT doc FROM suppressions WHERE server_id = $1 AND email = $2),
			EXISTS (SELECT 1 FROM servers WHERE id = $1)`, serverID, strings.ToLower(email)).Scan(&raw, &server); err != nil {
			return err
		}
		if !server {
			return store.ErrServerMissing
		}
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &sup)
	})
	return sup, found, err
}

// Unsuppress makes an address active again on the server.
func (s *Store) Unsuppress(serverID int64, email string) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		if ok, err := serverExists(ctx, tx, serverID, true); err != nil {
			return err
		} else if !ok {
			return store.ErrServerMissing
		}
		_, err := tx.Exec(ctx, `DELETE FROM suppressions WHERE server_id = $1 AND email = $2`, serverID, strings.ToLower(email))
		return err
	})
}
