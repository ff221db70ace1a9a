package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // without the trailing dot
	Pref uint16
}

// ErrNullMX says a domain publishes RFC 7505's null MX: it accepts no
// mail, so a message to it bounces at once instead of being retried.
var ErrNullMX = errors.New("the domain accepts no mail (null MX, RFC 7505)")

// Resolver answers the DNS questions of delivery. Its errors are
// *net.DNSError (or wrap ErrNullMX): IsNotFound means the name or record
// does not exist, which is permanent; every other failure (SERVFAIL,
// timeout, refused) is temporary and worth a retry. ClassifyError applies
// this rule. A Resolver is safe for concurrent use.
type Resolver struct {
	r *net.Resolver
}

// NewResolver returns a resolver asking the DNS server at addr ("host:port";
// port 53 if left out) over UDP and TCP, or the system's resolver if addr
// is empty.
func NewResolver(addr string) *Resolver {
	if addr == "" {
		return &Resolver{r: &net.Resolver{}}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "53")
	}
	var d net.Dialer
	return &Resolver{r: &net.Resolver{
		// Only Go's own resolver lets the server be chosen per resolver;
		// the system's reads /etc/resolv.conf.
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// LookupMX returns the mail exchangers of domain, most preferred first.
// A domain without MX records but with an address is its own mail
// exchanger (RFC 5321 §5.1). A null MX gives an error wrapping ErrNullMX.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	recs, err := r.r.LookupMX(ctx, absolute(domain))
	if err != nil {
		if !isNotFound(err) {
			return nil, err
		}
		// No MX records (or no such domain, which the address lookup
		// then reports as not found as well).
		if _, err := r.LookupIP(ctx, domain); err != nil {
			return nil, err
		}
		return []MX{{Host: strings.TrimSuffix(domain, "."), Pref: 0}}, nil
	}
	mxs := make([]MX, 0, len(recs))
	for _, rec := range recs {
		// RFC 7505 forbids other MX records beside a null MX; if a domain
		// has both anyway, the real ones are still worth trying.
		if rec.Host == "." {
			continue
		}
		mxs = append(mxs, MX{Host: strings.TrimSuffix(rec.Host, "."), Pref: rec.Pref})
	}
	if len(mxs) == 0 {
		return nil, fmt.Errorf("%s: %w", domain, ErrNullMX)
	}
	// net.Resolver has sorted them by preference, shuffling equal ones as
	// RFC 5321 §5.1 asks.
	return mxs, nil
}

// LookupIP returns the IPv4 and IPv6 addresses of host.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := r.r.LookupNetIP(ctx, "ip", absolute(host))
	if err != nil {
		return nil, err
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}

// LookupTXT returns the TXT records of name, each record's strings joined.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.r.LookupTXT(ctx, absolute(name))
}

// LookupCNAME returns the canonical name of name, without the trailing
// dot, lower case.
func (r *Resolver) LookupCNAME(ctx context.Context, name string) (string, error) {
	cname, err := r.r.LookupCNAME(ctx, absolute(name))
	return strings.ToLower(strings.TrimSuffix(cname, ".")), err
}

// LookupAddr returns the names of an address (its PTR records).
func (r *Resolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return r.r.LookupAddr(ctx, addr)
}

// absolute adds the trailing dot, so that the resolver never tries the
// name under the search domains of /etc/resolv.conf.
func absolute(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// isNotFound reports whether a DNS error says the name or the record does
// not exist, as opposed to a failure to get an answer.
func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}
