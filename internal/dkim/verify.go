package dkim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/postern/postern/store"
)

// LookupTimeout bounds each TXT lookup of a verification.
const LookupTimeout = 10 * time.Second

// VerifyStore is what a verification changes: a claim won, or the
// domain's keys and state.
type VerifyStore interface {
	TakeDomain(id int64, now time.Time) (store.Domain, error)
	ModifyDomain(id int64, fn func(*store.Domain) error) (store.Domain, error)
}

// ErrKeysChanged: the domain's keys changed while their records were
// looked up; nothing was changed.
var ErrKeysChanged = errors.New("the domain's keys changed while their records were looked up; try again")

// LookupError: DNS did not answer and nothing could be promoted, so nothing
// was changed.
type LookupError struct{ Err error }

func (e *LookupError) Error() string { return fmt.Sprintf("DNS did not answer (%v)", e.Err) }
func (e *LookupError) Unwrap() error { return e.Err }

// Verification is what Verify did.
type Verification struct {
	Domain   store.Domain
	Promoted bool // pending keys became the active ones (a rotation completed)
	Won      bool // a claim was proven and the name is the account's now
}

// Verify looks d's records up. Pending keys whose records are all
// published become the active keys (the relay signs with them from its
// next message on) and the active ones are revoked; a claim whose active
// records are published wins the name (store.ErrDomainProven while its
// holder's proof stands). Otherwise DKIMVerified says whether the active
// keys' records are all published. check, run in the store's
// transaction, may refuse the change (the caller's ownership rule).
func Verify(ctx context.Context, resolver TXTResolver, st VerifyStore, d store.Domain, now time.Time, check func(*store.Domain) error) (Verification, error) {
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	activeOK, activeErr := lookupKeys(ctx, resolver, d.Keys)
	var pendingOK bool
	var pendingErr error
	if len(d.PendingKeys) > 0 {
		pendingOK, pendingErr = lookupKeys(ctx, resolver, d.PendingKeys)
	}
	promote := len(d.PendingKeys) > 0 && pendingOK
	if !promote {
		if err := errors.Join(activeErr, pendingErr); err != nil {
			return Verification{Domain: d}, &LookupError{err}
		}
	}
	now = now.UTC()
	if d.Claim && activeOK {
		won, err := st.TakeDomain(d.ID, now)
		return Verification{Domain: won, Won: err == nil}, err
	}
	looked := keySet(d)
	d, err := st.ModifyDomain(d.ID, func(cur *store.Domain) error {
		if check != nil {
			if err := check(cur); err != nil {
				return err
			}
		}
		if keySet(*cur) != looked {
			return ErrKeysChanged
		}
		if promote {
			revoked := make([]store.DKIMKey, 0, len(cur.Keys))
			for _, k := range cur.Keys {
				k.PrivateKey = nil // never signed with again
				revoked = append(revoked, k)
			}
			cur.RevokedKeys, cur.RevokedAt = revoked, now
			cur.Keys, cur.PendingKeys = cur.PendingKeys, nil
			cur.DKIMVerified, cur.VerifiedAt = true, now
			return nil
		}
		cur.DKIMVerified = activeOK
		if activeOK {
			cur.VerifiedAt = now
		}
		return nil
	})
	return Verification{Domain: d, Promoted: promote}, err
}

// Selectors are the selectors of keys.
func Selectors(keys []store.DKIMKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.Selector)
	}
	return out
}

func keySet(d store.Domain) string {
	return strings.Join(Selectors(d.Keys), " ") + "/" + strings.Join(Selectors(d.PendingKeys), " ")
}

// lookupKeys reports whether every key's record is published, and the
// first DNS failure.
func lookupKeys(ctx context.Context, resolver TXTResolver, keys []store.DKIMKey) (bool, error) {
	all := len(keys) > 0
	var dnsErr error
	for _, k := range keys {
		lctx, cancel := context.WithTimeout(ctx, LookupTimeout)
		c := CheckRecord(lctx, resolver, k)
		cancel()
		switch c.Status {
		case Published:
		case DNSError:
			all = false
			if dnsErr == nil {
				dnsErr = fmt.Errorf("%s: %s", k.Host, c.Error)
			}
		default:
			all = false
		}
	}
	return all, dnsErr
}
