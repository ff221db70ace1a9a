package privateaddr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Dialer connects to a host name's addresses as a resolver gives them,
// refusing those Is reports unless AllowPrivate: a tenant's domain can
// point a name anywhere, so each fetch Postern makes on its behalf (an
// MTA-STS policy, a TLS report) is checked after DNS, at every
// connection, so that DNS rebinding gains nothing.
type Dialer struct {
	// Resolve returns the addresses of a host name.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// AllowPrivate lets the dialer connect to private addresses (tests).
	AllowPrivate bool
}

// ErrPrivate is a refused private address.
var ErrPrivate = errors.New("a loopback, private or link-local address, to which Postern does not connect unless allow-private-destinations is set")

// DialContext connects to addr ("host:port"), trying the host's
// addresses in turn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = d.Resolve(ctx, host); err != nil {
		return nil, err
	}
	var nd net.Dialer
	var errs []error
	for _, ip := range ips {
		if !d.AllowPrivate && Is(ip) {
			errs = append(errs, fmt.Errorf("%s is at %s: %w", host, ip, ErrPrivate))
			continue
		}
		conn, err := nd.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%s has no address", host)
	}
	return nil, errors.Join(errs...)
}
