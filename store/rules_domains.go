package store

import (
	"fmt"
	"strings"
	"time"
)

// Claiming decides how an account may add a domain whose name holder
// already holds (holder nil: nobody): as the holder (claim false), as a
// claim on the held name (claim true), or not at all (ErrDuplicate: the
// name is its own already, or its holder proved it in DNS, or the
// account claims it already).
func Claiming(accountID int64, holder *Domain, claimedByAccount bool) (claim bool, err error) {
	if holder == nil {
		return false, nil
	}
	if holder.AccountID == accountID || holder.DKIMVerified || claimedByAccount {
		return false, fmt.Errorf("store: domain %s: %w", holder.Name, ErrDuplicate)
	}
	return true, nil
}

// Taken decides a claim's taking of its name from holder (nil: nobody
// holds it any more): refused with ErrDomainProven while the holder's
// proof stands; else the claim becomes the verified holder, and the
// holder's account, if any, is told of its loss by the event returned.
func Taken(claim *Domain, holder *Domain, now time.Time) (*AccountEvent, error) {
	if !claim.Claim {
		return nil, fmt.Errorf("store: domain %d is no claim", claim.ID)
	}
	var lost *AccountEvent
	if holder != nil {
		if holder.DKIMVerified {
			return nil, ErrDomainProven
		}
		lost = &AccountEvent{At: now.UTC(), Type: AccountEventDomainLost, Domain: claim.Name,
			Message: fmt.Sprintf("The domain %s was removed from this account: another account published its DKIM records in DNS first, which this account had not done.", claim.Name)}
	}
	claim.Claim, claim.DKIMVerified, claim.VerifiedAt = false, true, now.UTC()
	return lost, nil
}

// Reverify records on d one daily look-up of a verified domain's
// records: found, the count of days missing starts anew; missing for
// failFor in a row, d loses its verification and the event returned
// tells its account. A domain not verified is left as it is.
func Reverify(d *Domain, found bool, now time.Time, failFor time.Duration) *AccountEvent {
	switch {
	case !d.DKIMVerified:
		return nil
	case found:
		d.FailingSince = time.Time{}
		return nil
	case d.FailingSince.IsZero():
		d.FailingSince = now.UTC()
	}
	if now.Sub(d.FailingSince) < failFor {
		return nil
	}
	d.DKIMVerified, d.FailingSince = false, time.Time{}
	return &AccountEvent{At: now.UTC(), Type: AccountEventDomainUnverified, Domain: d.Name,
		Message: fmt.Sprintf("The domain %s is no longer verified: its DKIM records were not found in DNS for %d days in a row. Publish them again and verify it, or another account that proves the name may take it.", d.Name, int(failFor.Hours()/24))}
}

// UpdatedDomain is next, an edit of prev, with what no edit changes
// kept from prev: its ID, account, name and creation time.
func UpdatedDomain(prev, next Domain) Domain {
	next.ID, next.AccountID, next.Name, next.CreatedAt = prev.ID, prev.AccountID, prev.Name, prev.CreatedAt
	return next
}

// SignedBy reports whether sig, DKIM-Signature fields as the relay keeps
// them for retries, holds a signature by domain with one of selectors.
func SignedBy(sig []byte, domain string, selectors []string) bool {
	text := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ", "\n\t", " ", "\n ", " ").Replace(string(sig))
	for _, line := range strings.Split(text, "\n") {
		_, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var d, sel string
		for _, tag := range strings.Split(value, ";") {
			name, v, ok := strings.Cut(tag, "=")
			if !ok {
				continue
			}
			v = strings.Join(strings.Fields(v), "")
			switch strings.TrimSpace(name) {
			case "d":
				d = strings.ToLower(v)
			case "s":
				sel = v
			}
		}
		if d == domain {
			for _, want := range selectors {
				if strings.EqualFold(sel, want) {
					return true
				}
			}
		}
	}
	return false
}

// BounceInactive is a bounce's Inactive: it made its recipient inactive
// and the server's suppression of that recipient (sup, nil when none) is
// still this bounce's (a suppression from another message is another
// bounce's).
func BounceInactive(b Bounce, sup *Suppression) bool {
	return b.Inactivated && sup != nil && sup.MessageID == b.MessageID
}
