package relay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/internal/dane"
	"github.com/postern/postern/internal/mtasts"
	"github.com/postern/postern/store"
)

// The TLS policy a delivery was held to, as events and metrics name it.
const (
	PolicyNone          = "none"          // no TLS: the server offered none, or it failed and plaintext followed
	PolicyOpportunistic = "opportunistic" // TLS because the server offered it; nothing demanded it
	PolicyMTASTS        = "mta-sts"       // the domain's MTA-STS policy in enforce mode: a listed MX, verified TLS 1.2+
	PolicyDANE          = "dane"          // the server's DNSSEC-signed TLSA records: a matching certificate, TLS 1.2+
)

// TLSInfo is what protected one session.
type TLSInfo struct {
	Policy  string // PolicyNone, PolicyOpportunistic, PolicyMTASTS or PolicyDANE
	Version uint16 // tls.VersionName; 0 without TLS
	Cipher  uint16 // tls.CipherSuiteName; 0 without TLS
	// Verified: the certificate verified, against the trusted roots for
	// the MX host name, or against the server's TLSA records.
	Verified bool
}

// TLSSession is the TLS outcome of one new session (or of one refusal to
// use a server) as TLS-RPT (RFC 8460) counts it. Sessions reused for
// further messages are not counted again.
type TLSSession struct {
	Policy    store.TLSPolicyRef
	Failure   *store.TLSFailure // nil: the session met the policy
	Effective string            // the TLSInfo.Policy of a success; the demanded policy of a failure
}

// TLS-RPT result types (RFC 8460 §4.3) that delivery produces.
const (
	resultSTARTTLSNotSupported = "starttls-not-supported"
	resultHostMismatch         = "certificate-host-mismatch"
	resultExpired              = "certificate-expired"
	resultNotTrusted           = "certificate-not-trusted"
	resultValidationFailure    = "validation-failure"
	resultTLSAInvalid          = "tlsa-invalid"
	resultDNSSECInvalid        = "dnssec-invalid"
	resultSTSFetchError        = "sts-policy-fetch-error"
	resultSTSInvalid           = "sts-policy-invalid"
)

// TLSAResolver finds DANE records; *dane.Resolver is one.
type TLSAResolver interface {
	LookupTLSA(ctx context.Context, host string, port int) (dane.Answer, error)
	Secure(ctx context.Context, host string) (bool, error)
}

// STSCache keeps fetched MTA-STS policies; every store.Backend is one.
type STSCache interface {
	STSPolicy(domain string) (store.STSPolicy, error)
	PutSTSPolicy(p store.STSPolicy) error
}

// TXTResolver looks up TXT records; *Resolver is one.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// STSPolicies finds the MTA-STS policy of recipient domains (RFC 8461
// §5): the _mta-sts record says whether there is one and which; a policy
// fetched under that record's id is cached in the store until its
// max_age ends, and still applies when the domain's policy server cannot
// be reached. What it found for a domain is kept in memory for a minute,
// so that a busy destination costs one lookup a minute, not one per
// message.
type STSPolicies struct {
	cache   STSCache
	txt     TXTResolver
	fetcher *mtasts.Fetcher
	now     func() time.Time
	log     *slog.Logger

	mu   sync.Mutex
	memo map[string]memoSTS
}

type memoSTS struct {
	found stsFound
	until time.Time
}

// stsMemoFor is how long a domain's policy is used without asking DNS
// again; stsMemoMax bounds the domains remembered.
const (
	stsMemoFor = time.Minute
	stsMemoMax = 10000
)

// NewSTSPolicies returns the MTA-STS lookup of delivery. now is the
// clock; time.Now if nil.
func NewSTSPolicies(cache STSCache, txt TXTResolver, fetcher *mtasts.Fetcher, now func() time.Time, log *slog.Logger) *STSPolicies {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &STSPolicies{cache: cache, txt: txt, fetcher: fetcher, now: now, log: log, memo: map[string]memoSTS{}}
}

// stsFound is a domain's policy as delivery applies it.
type stsFound struct {
	policy *mtasts.Policy // nil: none applies (also for mode none)
	// failure, when no policy applies although the domain announces
	// one, is why: for the TLS report.
	failure *store.TLSFailure
}

func (f stsFound) ref() store.TLSPolicyRef {
	if f.policy == nil {
		if f.failure != nil {
			return store.TLSPolicyRef{Type: store.TLSPolicySTS}
		}
		return store.TLSPolicyRef{Type: store.TLSPolicyNotFound}
	}
	return store.TLSPolicyRef{Type: store.TLSPolicySTS, Strings: f.policy.Lines(), MXHosts: f.policy.MX}
}

// Lookup returns the policy that applies to domain now.
func (s *STSPolicies) Lookup(ctx context.Context, domain string) stsFound {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := s.now()
	s.mu.Lock()
	m, ok := s.memo[domain]
	s.mu.Unlock()
	if ok && now.Before(m.until) {
		return m.found
	}
	found := s.lookup(ctx, domain, now)
	s.mu.Lock()
	if len(s.memo) >= stsMemoMax {
		clear(s.memo)
	}
	s.memo[domain] = memoSTS{found: found, until: now.Add(stsMemoFor)}
	s.mu.Unlock()
	return found
}

func (s *STSPolicies) lookup(ctx context.Context, domain string, now time.Time) stsFound {
	var cached *mtasts.Policy
	c, err := s.cache.STSPolicy(domain)
	switch {
	case err == nil && now.Before(c.Expires):
		if p, err := mtasts.ParsePolicy(c.Text); err == nil {
			cached = &p
		}
	case err != nil && !errors.Is(err, store.ErrNotFound):
		s.log.Warn("relay: cannot read the cached MTA-STS policy", "domain", domain, "err", err)
	}
	useCached := func() stsFound {
		if cached == nil || cached.Mode == mtasts.ModeNone {
			return stsFound{}
		}
		return stsFound{policy: cached}
	}

	txts, err := s.txt.LookupTXT(ctx, "_mta-sts."+domain)
	if err != nil {
		// No record, or no answer: a policy still cached applies (RFC
		// 8461 §5.1: removing the record does not remove the policy).
		return useCached()
	}
	rec, err := mtasts.FindRecord(txts)
	if err != nil {
		return useCached()
	}
	if cached != nil && c.ID == rec.ID {
		return useCached()
	}
	p, text, err := s.fetcher.Fetch(ctx, domain)
	if err != nil {
		if cached != nil {
			s.log.Info("relay: MTA-STS policy fetch failed; the cached policy applies", "domain", domain, "err", err)
			return useCached()
		}
		failure := &store.TLSFailure{ResultType: resultSTSInvalid, Reason: err.Error()}
		var fe *mtasts.FetchError
		if errors.As(err, &fe) {
			failure.ResultType = resultSTSFetchError
		}
		s.log.Info("relay: MTA-STS policy fetch failed; delivering as without a policy", "domain", domain, "err", err)
		return stsFound{failure: failure}
	}
	if err := s.cache.PutSTSPolicy(store.STSPolicy{Domain: domain, ID: rec.ID, Text: text, FetchedAt: now, Expires: now.Add(p.MaxAge)}); err != nil {
		s.log.Warn("relay: cannot cache the MTA-STS policy", "domain", domain, "err", err)
	}
	if p.Mode == mtasts.ModeNone {
		return stsFound{}
	}
	return stsFound{policy: &p}
}

// hostPolicy is what delivery demands of one MX host.
type hostPolicy struct {
	policy  string // PolicyOpportunistic (nothing demanded), PolicyMTASTS or PolicyDANE
	tlsa    []dane.Record
	ref     store.TLSPolicyRef
	testing bool // MTA-STS in testing mode: failures are reported, not enforced
}

// tlsFailureType tells a TLS-RPT result type from a failure to set up
// TLS.
func tlsFailureType(err error) string {
	var (
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
		policy  *policyError
	)
	switch {
	case errors.As(err, &policy):
		return policy.resultType
	case errors.As(err, &host):
		return resultHostMismatch
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return resultExpired
	case errors.As(err, &unknown):
		return resultNotTrusted
	}
	return resultValidationFailure
}

// policyError is a server refused by a TLS policy, with its TLS-RPT
// result type.
type policyError struct {
	resultType string
	err        error
}

func (e *policyError) Error() string { return e.err.Error() }
func (e *policyError) Unwrap() error { return e.err }

// webPKIVerify checks that a session's certificate verifies for
// host against roots (the system's if nil), for the record of an
// opportunistic session.
func webPKIVerify(cs tls.ConnectionState, host string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}

// describeTLS is the TLS of a session in words, for logs.
func describeTLS(t TLSInfo) string {
	if t.Version == 0 {
		return t.Policy
	}
	return fmt.Sprintf("%s %s %s verified=%t", t.Policy, tls.VersionName(t.Version), tls.CipherSuiteName(t.Cipher), t.Verified)
}
