package dnstest_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/dnstest"
)

// resolver is Go's own resolver pointed at srv, as production code points
// it at a configured server.
func resolver(srv *dnstest.Server) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv.Addr())
		},
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestMX(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetMX("Example.TEST", []dnstest.MX{{Host: "mx2.example.test", Pref: 20}, {Host: "mx1.example.test", Pref: 10}})

	mxs, err := resolver(srv).LookupMX(ctx(t), "example.test.")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mx := range mxs {
		got = append(got, mx.Host)
	}
	if want := []string{"mx1.example.test.", "mx2.example.test."}; !slices.Equal(got, want) {
		t.Errorf("MX hosts = %v, want %v", got, want)
	}
	if mxs[0].Pref != 10 || mxs[1].Pref != 20 {
		t.Errorf("preferences = %d, %d", mxs[0].Pref, mxs[1].Pref)
	}
	qs := srv.Queries()
	if len(qs) != 1 || qs[0] != (dnstest.Query{Name: "example.test", Type: "MX", Network: "udp"}) {
		t.Errorf("queries = %+v", qs)
	}
}

func TestNullMX(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetNullMX("nomail.test")
	mxs, err := resolver(srv).LookupMX(ctx(t), "nomail.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(mxs) != 1 || mxs[0].Host != "." || mxs[0].Pref != 0 {
		t.Errorf("null MX = %+v", mxs)
	}
}

func TestAddresses(t *testing.T) {
	srv := dnstest.New(t)
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	srv.SetA("host.test", v4)
	srv.SetAAAA("host.test", v6)

	addrs, err := resolver(srv).LookupNetIP(ctx(t), "ip", "host.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 2 || !slices.Contains(addrs, v4) || !slices.Contains(addrs, v6) {
		t.Errorf("addresses = %v, want %v and %v", addrs, v4, v6)
	}
}

// A DKIM key is longer than one character-string and, with two of them,
// than a plain UDP answer: it must come back whole, over TCP.
func TestLongTXTOverTCP(t *testing.T) {
	srv := dnstest.New(t)
	long := strings.Repeat("k", 400)
	other := strings.Repeat("z", 300)
	srv.SetTXT("sel._domainkey.example.test", long, other)

	r := resolver(srv)
	// Without EDNS0 the client accepts 512 bytes; Go's resolver sends
	// EDNS0 with 1232, so make the answer larger than that too.
	srv.SetTXT("big.example.test", strings.Repeat("a", 700), strings.Repeat("b", 700))
	txts, err := r.LookupTXT(ctx(t), "big.example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(txts) != 2 || !slices.Contains(txts, strings.Repeat("a", 700)) {
		t.Errorf("big TXT came back as %d records of lengths %v", len(txts), lengths(txts))
	}
	var sawTCP bool
	for _, q := range srv.Queries() {
		sawTCP = sawTCP || (q.Name == "big.example.test" && q.Network == "tcp")
	}
	if !sawTCP {
		t.Errorf("truncated answer was not retried over TCP: %+v", srv.Queries())
	}

	txts, err = r.LookupTXT(ctx(t), "sel._domainkey.example.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(txts) != 2 || !slices.Contains(txts, long) || !slices.Contains(txts, other) {
		t.Errorf("TXT came back as %d records of lengths %v", len(txts), lengths(txts))
	}
}

func lengths(ss []string) []int {
	var n []int
	for _, s := range ss {
		n = append(n, len(s))
	}
	return n
}

func TestNegativeAnswers(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetA("only-a.test", netip.MustParseAddr("192.0.2.1"))
	srv.SetServFail("broken.test")
	r := resolver(srv)

	var dnsErr *net.DNSError
	_, err := r.LookupMX(ctx(t), "unknown.test.")
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("unknown name: err = %#v, want not found", err)
	}
	// NODATA: the name exists, without MX records.
	_, err = r.LookupMX(ctx(t), "only-a.test.")
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("name without MX: err = %#v, want not found", err)
	}
	_, err = r.LookupMX(ctx(t), "broken.test.")
	if !errors.As(err, &dnsErr) || dnsErr.IsNotFound || !dnsErr.IsTemporary {
		t.Errorf("SERVFAIL: err = %#v, want temporary", err)
	}
}

// Records change while queries are answered; run with -race.
func TestConcurrentUse(t *testing.T) {
	srv := dnstest.New(t)
	r := resolver(srv)
	c := ctx(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			// Distinct names: Go's resolver merges identical lookups in flight.
			name := fmt.Sprintf("busy%d.test", i)
			srv.SetA(name, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
			if _, err := r.LookupNetIP(c, "ip4", name+"."); err != nil {
				t.Error(err)
			}
			srv.Queries()
		})
	}
	wg.Wait()
	if n := len(srv.Queries()); n != 8 {
		t.Errorf("recorded %d queries, want 8", n)
	}
}
