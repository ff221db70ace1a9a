package relay_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/relay"
)

// testContext bounds a test's network waits so that a bug hangs nothing.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestLookupMXSortedByPreference(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetMX("example.test", []dnstest.MX{
		{Host: "backup.example.test", Pref: 20},
		{Host: "primary.example.test", Pref: 5},
		{Host: "last.example.test", Pref: 30},
	})
	r := relay.NewResolver(srv.Addr())

	mxs, err := r.LookupMX(testContext(t), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.MX{{Host: "primary.example.test", Pref: 5}, {Host: "backup.example.test", Pref: 20}, {Host: "last.example.test", Pref: 30}}
	if !slices.Equal(mxs, want) {
		t.Errorf("LookupMX = %v, want %v", mxs, want)
	}
	// The name is asked as given, never under a search domain.
	for _, q := range srv.Queries() {
		if q.Name != "example.test" {
			t.Errorf("unexpected query %+v", q)
		}
	}
}

func TestLookupMXNull(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetNullMX("nomail.test")
	srv.SetA("nomail.test", netip.MustParseAddr("192.0.2.1")) // must not be used
	_, err := relay.NewResolver(srv.Addr()).LookupMX(testContext(t), "nomail.test")
	if !errors.Is(err, relay.ErrNullMX) {
		t.Fatalf("err = %v, want ErrNullMX", err)
	}
	if c := relay.ClassifyError(err); c.Outcome != relay.Bounced || c.Bounce != relay.BounceDNSError {
		t.Errorf("null MX classified as %+v, want a DnsError bounce", c)
	}
}

// RFC 5321 §5.1: no MX records, but an address: the domain is its own MX.
func TestLookupMXImplicit(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetAAAA("bare.test", netip.MustParseAddr("2001:db8::25"))
	mxs, err := relay.NewResolver(srv.Addr()).LookupMX(testContext(t), "bare.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []relay.MX{{Host: "bare.test", Pref: 0}}; !slices.Equal(mxs, want) {
		t.Errorf("LookupMX = %v, want %v", mxs, want)
	}
}

func TestLookupMXFailures(t *testing.T) {
	srv := dnstest.New(t)
	srv.SetTXT("txtonly.test", "v=spf1 -all") // exists, no MX, no address
	srv.SetServFail("broken.test")
	r := relay.NewResolver(srv.Addr())

	tests := []struct {
		domain string
		want   relay.Outcome
	}{
		{"nonexistent.test", relay.Bounced},
		{"txtonly.test", relay.Bounced},
		{"broken.test", relay.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			mxs, err := r.LookupMX(testContext(t), tt.domain)
			if err == nil {
				t.Fatalf("LookupMX = %v, want an error", mxs)
			}
			c := relay.ClassifyError(err)
			if c.Outcome != tt.want {
				t.Errorf("%v classified as %+v, want %v", err, c, tt.want)
			}
			if tt.want == relay.Bounced && c.Bounce != relay.BounceDNSError {
				t.Errorf("bounce type %v, want DnsError", c.Bounce)
			}
		})
	}
	// A temporary failure must not turn into the A/AAAA fallback.
	for _, q := range srv.Queries() {
		if q.Name == "broken.test" && q.Type != "MX" {
			t.Errorf("SERVFAIL on MX led to a %s query", q.Type)
		}
	}
}

func TestLookupMXTimeoutIsTemporary(t *testing.T) {
	// A UDP socket nobody reads from: the query is never answered.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = relay.NewResolver(silent.LocalAddr().String()).LookupMX(ctx, "example.test")
	if err == nil {
		t.Fatal("LookupMX answered by a silent server")
	}
	if c := relay.ClassifyError(err); c.Outcome != relay.Transient {
		t.Errorf("timeout %v classified as %+v, want Transient", err, c)
	}
}

func TestLookupIPAndTXT(t *testing.T) {
	srv := dnstest.New(t)
	v4, v6 := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("2001:db8::9")
	srv.SetA("mx.example.test", v4)
	srv.SetAAAA("mx.example.test", v6)
	srv.SetTXT("_dmarc.example.test", "v=DMARC1; p=reject")
	r := relay.NewResolver(srv.Addr())

	ips, err := r.LookupIP(testContext(t), "mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 || !slices.Contains(ips, v4) || !slices.Contains(ips, v6) {
		t.Errorf("LookupIP = %v", ips)
	}
	txt, err := r.LookupTXT(testContext(t), "_dmarc.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(txt, []string{"v=DMARC1; p=reject"}) {
		t.Errorf("LookupTXT = %q", txt)
	}
}
