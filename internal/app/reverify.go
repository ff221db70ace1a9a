package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/postern/postern/internal/dkim"

	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// reverifyInterval is how often verified domains are looked up again.
const reverifyInterval = 24 * time.Hour

// reverifier is what the re-verification needs of the store.
type reverifier interface {
	VerifiedDomains() ([]store.Domain, error)
	Reverified(id int64, found bool, now time.Time, failFor time.Duration) (store.Domain, error)
}

// runReverify looks the DKIM records of every verified domain up once a
// day, until ctx is done: a verified domain stays with its account only
// while it keeps its records published (domain-reverify-days).
func runReverify(ctx context.Context, st reverifier, resolver *relay.Resolver, failFor time.Duration, now func() time.Time, log *slog.Logger) {
	t := time.NewTicker(reverifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		exclusively(ctx, st, "reverify", log, func() { reverifyDomains(st, resolver, now(), failFor, log) })
	}
}

// reverifyDomains checks each verified domain's records once. A lookup
// that gets no answer (SERVFAIL, timeout) counts neither way.
func reverifyDomains(st reverifier, resolver *relay.Resolver, now time.Time, failFor time.Duration, log *slog.Logger) {
	domains, err := st.VerifiedDomains()
	if err != nil {
		log.Error("reverify: listing the verified domains failed", "err", err)
		return
	}
	for _, d := range domains {
		found, answered := true, true
		for _, k := range d.Keys {
			switch checkRecord(resolver, k) {
			case dkim.DNSError:
				answered = false
			case dkim.Missing, dkim.Different:
				found = false
			}
		}
		if !answered {
			continue
		}
		after, err := st.Reverified(d.ID, found, now, failFor)
		switch {
		case err != nil:
			log.Error("reverify: recording failed", "domain", d.Name, "err", err)
		case !after.DKIMVerified:
			log.Warn("reverify: domain no longer verified: its DKIM records were missing for domain-reverify-days", "domain", d.Name, "account", d.AccountID)
		case !found:
			log.Warn("reverify: DKIM records missing", "domain", d.Name, "account", d.AccountID, "since", after.FailingSince.Format(time.RFC3339))
		}
	}
}

// dnsTimeout bounds each lookup of the re-verification.
const dnsTimeout = 10 * time.Second

// checkRecord looks one key's record up, within dnsTimeout.
func checkRecord(r dkim.TXTResolver, k store.DKIMKey) dkim.Status {
	ctx, cancel := context.WithTimeout(context.Background(), dnsTimeout)
	defer cancel()
	return dkim.CheckRecord(ctx, r, k).Status
}
