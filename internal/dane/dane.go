// Package dane checks SMTP servers' certificates against their TLSA
// records (DANE for SMTP, RFC 7672), looked up through a validating
// resolver whose AD bit is trusted only on a loopback address.
package dane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TLSA usages, selectors and matching types (RFC 6698, RFC 7218 names).
const (
	UsageDANETA = 2 // a trust anchor in the server's chain
	UsageDANEEE = 3 // the server's own certificate or key

	SelectorCert = 0 // the whole certificate
	SelectorSPKI = 1 // its SubjectPublicKeyInfo

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Record is one TLSA record.
type Record struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// String is the record's presentation form, "3 1 1 <hex>", as TLS-RPT
// reports policies.
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// Usable reports whether SMTP uses the record: only DANE-TA and DANE-EE
// with known selectors and matching types (RFC 7672 §3.1). A server
// whose records are all unusable is not held to DANE.
func (r Record) Usable() bool {
	return (r.Usage == UsageDANETA || r.Usage == UsageDANEEE) &&
		r.Selector <= SelectorSPKI && r.MatchingType <= MatchSHA512
}

// Answer is what DNS said about a server's TLSA records.
type Answer struct {
	Records []Record // usable or not, in DNS order
	// Secure: the resolver validated the answer with DNSSEC (it set the
	// AD bit and is on loopback). Only then do the records count.
	Secure bool
}

// Usable returns the records SMTP uses.
func (a Answer) Usable() []Record {
	var out []Record
	for _, r := range a.Records {
		if r.Usable() {
			out = append(out, r)
		}
	}
	return out
}

// Resolver asks a validating DNS resolver for TLSA records.
type Resolver struct {
	addr    string // host:port
	timeout time.Duration
}

// ErrUntrusted says the resolver is not on a loopback address: the path
// to it could forge the AD bit, so DANE cannot be used (RFC 7672 §1.3 and
// Postfix's rule).
var ErrUntrusted = errors.New("the DNS resolver is not on a loopback address, so its DNSSEC validation (AD bit) cannot be trusted")

// NewResolver returns a resolver asking addr ("host:port", port 53 if
// left out), or the first nameserver of /etc/resolv.conf if addr is
// empty. The error is ErrUntrusted when that resolver is not on
// loopback.
func NewResolver(addr string) (*Resolver, error) {
	if addr == "" {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			return nil, fmt.Errorf("no resolver in /etc/resolv.conf: %v", err)
		}
		addr = net.JoinHostPort(conf.Servers[0], conf.Port)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	host, _, _ := net.SplitHostPort(addr)
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return nil, fmt.Errorf("%s: %w", addr, ErrUntrusted)
	}
	return &Resolver{addr: addr, timeout: 5 * time.Second}, nil
}

// LookupTLSA returns the TLSA records of SMTP on host at port
// (_25._tcp.host for port 25). A name without records, secure or not, is
// an Answer without records. The error is a failure to get an answer
// (SERVFAIL, which a validating resolver also gives for bogus data, or a
// timeout).
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) (Answer, error) {
	name := fmt.Sprintf("_%d._tcp.%s", port, dns.Fqdn(strings.ToLower(host)))
	resp, err := r.exchange(ctx, name, dns.TypeTLSA)
	if err != nil {
		return Answer{}, err
	}
	ans := Answer{Secure: resp.AuthenticatedData}
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			data, err := hex.DecodeString(t.Certificate)
			if err != nil {
				continue
			}
			ans.Records = append(ans.Records, Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		}
	}
	return ans, nil
}

// Secure reports whether host's address records are DNSSEC-validated:
// a server whose TLSA lookup fails is skipped only when they are (RFC
// 7672 §2.2.2), since an attacker could otherwise hide its records.
func (r *Resolver) Secure(ctx context.Context, host string) (bool, error) {
	resp, err := r.exchange(ctx, dns.Fqdn(strings.ToLower(host)), dns.TypeA)
	if err != nil {
		return false, err
	}
	return resp.AuthenticatedData, nil
}

// exchange asks one question with the DO bit, over UDP and, when the
// answer is truncated, TCP.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(4096, true)
	m.AuthenticatedData = true
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: r.timeout}
	resp, _, err := c.ExchangeContext(ctx, m, r.addr)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, r.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], name, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("%s %s: %s", dns.TypeToString[qtype], name, dns.RcodeToString[resp.Rcode])
}

// Verify checks a server's certificate chain, leaf first as TLS gave it,
// against usable records: a DANE-EE record matches the leaf, with no
// check of names or dates (RFC 7672 §3.1.1); a DANE-TA record matches a
// certificate of the chain, which must then issue the leaf for one of
// names, and be in date (§3.1.2). One matching record is enough.
func Verify(records []Record, chain []*x509.Certificate, names []string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("DANE: the server sent no certificate")
	}
	var taErr error
	for _, r := range records {
		switch {
		case !r.Usable():
		case r.Usage == UsageDANEEE:
			if matches(r, chain[0]) {
				return nil
			}
		case r.Usage == UsageDANETA:
			for _, ta := range chain[1:] {
				if !matches(r, ta) {
					continue
				}
				if taErr = verifyWithAnchor(ta, chain, names, now); taErr == nil {
					return nil
				}
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("DANE: a trust anchor matched, but: %w", taErr)
	}
	return errors.New("DANE: no TLSA record matches the server's certificate")
}

func verifyWithAnchor(ta *x509.Certificate, chain []*x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	var err error
	for _, name := range names {
		if _, err = chain[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter, CurrentTime: now}); err == nil {
			return nil
		}
	}
	return err
}

func matches(r Record, cert *x509.Certificate) bool {
	data := cert.Raw
	if r.Selector == SelectorSPKI {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case MatchSHA256:
		sum := sha256.Sum256(data)
		data = sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		data = sum[:]
	}
	return bytes.Equal(data, r.Data)
}
