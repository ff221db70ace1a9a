package dkim

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/postern/postern/store"
)

// TXTResolver looks up TXT records.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Status is what looking one key's record up found.
type Status string

// Statuses of a record check.
const (
	Published Status = "published" // a TXT record there holds the key
	Missing   Status = "missing"   // no such name, or no DKIM record there
	Different Status = "different" // a DKIM record there holds another key
	DNSError  Status = "dns-error" // no answer: nothing can be concluded
)

// Check is the outcome of looking one key's record up.
type Check struct {
	Algorithm string
	Host      string
	Status    Status
	Found     []string `json:",omitempty"` // the DKIM records found there, when Different
	Error     string   `json:",omitempty"` // the DNS failure, when DNSError
}

// CheckRecord looks the TXT record of k up at k.Host. No such name, or no
// TXT record there, is an answer (Missing); anything else (SERVFAIL,
// timeout, refused) is not (DNSError).
func CheckRecord(ctx context.Context, r TXTResolver, k store.DKIMKey) Check {
	c := Check{Algorithm: k.Algorithm, Host: k.Host, Status: Missing}
	txts, err := r.LookupTXT(ctx, k.Host)
	if err != nil {
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			c.Status, c.Error = DNSError, err.Error()
		}
		return c
	}
	for _, txt := range txts {
		if !IsRecord(txt) {
			continue
		}
		if RecordMatches(txt, k.TextValue) {
			c.Status, c.Found = Published, nil
			return c
		}
		c.Status = Different
		c.Found = append(c.Found, txt)
	}
	return c
}

// tags reads a DKIM tag list (RFC 6376 §3.2); whitespace inside values is
// dropped, as base64 keys allow it.
func tags(v string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(name)] = strings.Join(strings.Fields(value), "")
	}
	return out
}

// IsRecord reports whether a TXT record looks like a DKIM key record.
func IsRecord(txt string) bool {
	t := tags(txt)
	_, hasKey := t["p"]
	return hasKey || t["v"] == "DKIM1"
}

// RecordMatches reports whether a published TXT record holds the key of
// want: the same public key and algorithm (k= defaults to rsa), and v=,
// if present, DKIM1. Other tags (t=, n=, ...) and spacing are the
// publisher's choice.
func RecordMatches(published, want string) bool {
	p, w := tags(published), tags(want)
	if p["p"] == "" || p["p"] != w["p"] {
		return false
	}
	k := p["k"]
	if k == "" {
		k = "rsa"
	}
	if !strings.EqualFold(k, w["k"]) {
		return false
	}
	if v, ok := p["v"]; ok && v != "DKIM1" {
		return false
	}
	return true
}

// SigningDomain reads the d= tag of the first DKIM-Signature field of
// sig, as Sign returns them: "unsigned" when sig is empty.
func SigningDomain(sig []byte) string {
	if len(sig) == 0 {
		return "unsigned"
	}
	for _, tag := range strings.Split(string(sig), ";") {
		tag = strings.Join(strings.Fields(tag), "")
		if v, ok := strings.CutPrefix(tag, "d="); ok {
			return v
		}
	}
	return "signed"
}
