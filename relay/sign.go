package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

// sign signs raw with the keys of its From domain, if the server's
// account has that domain, and returns the DKIM-Signature fields (nil
// when unsigned) and what EventDetails.Signed records: the signing
// domain, or why the message went unsigned.
//
// The error is ctx's, when it ends while the signature waits for the CPU.
func (w *Worker) sign(ctx context.Context, srv store.Server, raw []byte, log *slog.Logger) ([]byte, string, error) {
	domain, err := message.FromDomain(raw)
	if err != nil {
		log.Warn("relay: sending unsigned", "reason", err)
		return nil, "unsigned: " + err.Error(), nil
	}
	d, err := w.cfg.Store.DomainByName(domain)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && d.AccountID != srv.AccountID):
		// Another account's domain is as good as none: its keys sign
		// only its own account's mail.
		return nil, fmt.Sprintf("unsigned: the domain %s has no DKIM key on this account", domain), nil
	case err != nil:
		log.Error("relay: sending unsigned: domain lookup failed", "domain", domain, "err", err)
		return nil, "unsigned: the domain's keys could not be read", nil
	}
	signer, err := w.signers.get(d)
	if err == nil {
		if w.cfg.CPU != nil {
			release, err := w.cfg.CPU.Background(ctx)
			if err != nil {
				return nil, "", fmt.Errorf("waiting to sign: %w", err)
			}
			defer release()
		}
		var sig []byte
		if sig, err = signer.Sign(raw); err == nil {
			for _, alg := range signer.Algorithms() {
				w.metrics.dkim.WithLabelValues(alg).Inc()
			}
			return sig, d.Name, nil
		}
	}
	log.Error("relay: sending unsigned: signing failed", "domain", domain, "err", err)
	return nil, "unsigned: signing failed: " + err.Error(), nil
}

// signerCache keeps each domain's parsed keys: parsing an RSA key costs
// more than a signature.
type signerCache struct {
	mu sync.Mutex
	m  map[string]cachedSigner // by domain name
}

type cachedSigner struct {
	selectors string // the keys it was made from
	signer    *dkim.Signer
}

func (c *signerCache) get(d store.Domain) (*dkim.Signer, error) {
	selectors := make([]string, 0, len(d.Keys))
	for _, k := range d.Keys {
		selectors = append(selectors, k.Selector)
	}
	id := strings.Join(selectors, " ")
	c.mu.Lock()
	cached, ok := c.m[d.Name]
	c.mu.Unlock()
	if ok && cached.selectors == id {
		return cached.signer, nil
	}
	signer, err := dkim.NewSigner(d.Name, d.Keys)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]cachedSigner{}
	}
	c.m[d.Name] = cachedSigner{selectors: id, signer: signer}
	c.mu.Unlock()
	return signer, nil
}
