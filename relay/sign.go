package relay

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"

	"github.com/postern/postern/store"
)

// sign signs raw with the keys of its From domain, if the server's
// account has that domain, and returns the DKIM-Signature fields (nil
// when unsigned) and what EventDetails.Signed records: the signing
// domain, or why the message went unsigned.
func (w *Worker) sign(srv store.Server, raw []byte, log *slog.Logger) ([]byte, string) {
	domain, err := fromDomain(raw)
	if err != nil {
		log.Warn("relay: sending unsigned", "reason", err)
		return nil, "unsigned: " + err.Error()
	}
	d, err := w.cfg.Store.DomainByName(domain)
	switch {
	case errors.Is(err, store.ErrNotFound) || (err == nil && d.AccountID != srv.AccountID):
		// Another account's domain is as good as none: its keys sign
		// only its own account's mail.
		return nil, fmt.Sprintf("unsigned: the domain %s has no DKIM key on this account", domain)
	case err != nil:
		log.Error("relay: sending unsigned: domain lookup failed", "domain", domain, "err", err)
		return nil, "unsigned: the domain's keys could not be read"
	}
	signer, err := w.signers.get(d)
	if err == nil {
		var sig []byte
		if sig, err = signer.Sign(raw); err == nil {
			for _, alg := range signer.algorithms() {
				w.metrics.dkim.WithLabelValues(alg).Inc()
			}
			return sig, d.Name
		}
	}
	log.Error("relay: sending unsigned: signing failed", "domain", domain, "err", err)
	return nil, "unsigned: signing failed: " + err.Error()
}

// fromDomain returns the lower-case domain of the address in the From
// field of raw.
func fromDomain(raw []byte) (string, error) {
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(raw)
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(raw[:end:end], "\r\n\r\n"...)))
	if err != nil {
		return "", fmt.Errorf("the header cannot be read: %v", err)
	}
	from := m.Header.Get("From")
	if from == "" {
		return "", errors.New("the message has no From field")
	}
	list, err := (&mail.AddressParser{}).ParseList(from)
	if err != nil || len(list) == 0 {
		return "", fmt.Errorf("the From field %q has no address", from)
	}
	at := strings.LastIndexByte(list[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("the From address %q has no domain", list[0].Address)
	}
	return store.NormalizeDomain(list[0].Address[at+1:]), nil
}

// signingDomain reads the d= tag of the first DKIM-Signature field, for
// the events of retries, which reuse the first attempt's signature.
func signingDomain(sig []byte) string {
	if len(sig) == 0 {
		return "unsigned"
	}
	s := string(sig)
	for _, tag := range strings.Split(s, ";") {
		tag = strings.Join(strings.Fields(tag), "")
		if v, ok := strings.CutPrefix(tag, "d="); ok {
			return v
		}
	}
	return "signed"
}

// signerCache keeps each domain's parsed keys: parsing an RSA key costs
// more than a signature.
type signerCache struct {
	mu sync.Mutex
	m  map[string]cachedSigner // by domain name
}

type cachedSigner struct {
	selectors string // the keys it was made from
	signer    *Signer
}

func (c *signerCache) get(d store.Domain) (*Signer, error) {
	keys := DomainKeys{Domain: d.Name}
	var selectors []string
	for _, k := range d.Keys {
		rk := DKIMKey{Algorithm: k.Algorithm, Selector: k.Selector, PrivateKey: k.PrivateKey, Host: k.Host, TextValue: k.TextValue}
		switch {
		case k.Algorithm == "ed25519" && keys.Ed25519.PrivateKey == nil:
			keys.Ed25519 = rk
		case k.Algorithm == "rsa" && keys.RSA.PrivateKey == nil:
			keys.RSA = rk
		default:
			continue
		}
		selectors = append(selectors, k.Selector)
	}
	if len(selectors) == 0 {
		return nil, fmt.Errorf("the domain %s has no Ed25519 or RSA key", d.Name)
	}
	id := strings.Join(selectors, " ")
	c.mu.Lock()
	cached, ok := c.m[d.Name]
	c.mu.Unlock()
	if ok && cached.selectors == id {
		return cached.signer, nil
	}
	signer, err := NewSigner(keys)
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
