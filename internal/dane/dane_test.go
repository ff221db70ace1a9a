package dane

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/testca"
)

func chain(t *testing.T, ca *testca.CA, names ...string) []*x509.Certificate {
	t.Helper()
	c := ca.Issue(names...)
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cert)
	}
	return out
}

func spkiSHA256(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

func TestVerify(t *testing.T) {
	ca := testca.New(t)
	other := testca.New(t)
	good := chain(t, ca, "mx.example.org")
	now := time.Now()
	names := []string{"mx.example.org"}

	ee := Record{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: spkiSHA256(good[0])}
	fullCert := Record{Usage: UsageDANEEE, Selector: SelectorCert, MatchingType: MatchFull, Data: good[0].Raw}
	ta := Record{Usage: UsageDANETA, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: spkiSHA256(ca.Cert)}
	wrong := Record{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: spkiSHA256(other.Cert)}
	pkixEE := Record{Usage: 1, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: spkiSHA256(good[0])}

	for name, tc := range map[string]struct {
		records []Record
		chain   []*x509.Certificate
		names   []string
		ok      bool
	}{
		"3 1 1":                        {[]Record{ee}, good, names, true},
		"3 0 0":                        {[]Record{fullCert}, good, names, true},
		"3 1 1 ignores the name":       {[]Record{ee}, good, []string{"other.example"}, true},
		"2 1 1":                        {[]Record{ta}, good, names, true},
		"2 1 1 checks the name":        {[]Record{ta}, good, []string{"other.example"}, false},
		"mismatch":                     {[]Record{wrong}, good, names, false},
		"one of two matches":           {[]Record{wrong, ee}, good, names, true},
		"PKIX-EE is not used for SMTP": {[]Record{pkixEE}, good, names, false},
		"no certificate":               {[]Record{ee}, nil, names, false},
	} {
		err := Verify(tc.records, tc.chain, tc.names, now)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", name, err, tc.ok)
		}
	}
	if pkixEE.Usable() || !ee.Usable() || !ta.Usable() {
		t.Error("Usable is wrong")
	}
	if got := ee.String(); !strings.HasPrefix(got, "3 1 1 ") || len(got) != 6+64 {
		t.Errorf("String = %q", got)
	}
}

func TestLookupTLSA(t *testing.T) {
	srv := dnstest.New(t)
	data := make([]byte, 32)
	srv.SetTLSA("_25._tcp.mx.signed.example", dnstest.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: data})
	srv.SetA("mx.signed.example", netip.MustParseAddr("127.0.0.1"))
	srv.SetSigned("signed.example")
	srv.SetTLSA("_25._tcp.mx.plain.example", dnstest.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: data})
	srv.SetServFail("_25._tcp.mx.broken.example")

	r, err := NewResolver(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ans, err := r.LookupTLSA(ctx, "MX.signed.example.", 25)
	if err != nil || !ans.Secure || len(ans.Usable()) != 1 || ans.Records[0].String() != "3 1 1 "+strings.Repeat("00", 32) {
		t.Errorf("signed zone: %+v, %v", ans, err)
	}
	if ans, err := r.LookupTLSA(ctx, "mx.plain.example", 25); err != nil || ans.Secure || len(ans.Records) != 1 {
		t.Errorf("unsigned zone: %+v, %v (want the record, not secure)", ans, err)
	}
	if ans, err := r.LookupTLSA(ctx, "mx.none.example", 25); err != nil || len(ans.Records) != 0 {
		t.Errorf("no such name: %+v, %v", ans, err)
	}
	if _, err := r.LookupTLSA(ctx, "mx.broken.example", 25); err == nil || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("SERVFAIL: %v", err)
	}
	if ok, err := r.Secure(ctx, "mx.signed.example"); err != nil || !ok {
		t.Errorf("Secure(signed) = %v, %v", ok, err)
	}
	if ok, err := r.Secure(ctx, "mx.plain.example"); err != nil || ok {
		t.Errorf("Secure(plain) = %v, %v", ok, err)
	}
}

func TestResolverMustBeLoopback(t *testing.T) {
	for _, addr := range []string{"8.8.8.8", "192.168.1.1:53", "[2001:4860:4860::8888]:53", "resolver.example:53"} {
		if _, err := NewResolver(addr); !errors.Is(err, ErrUntrusted) {
			t.Errorf("NewResolver(%q) = %v, want ErrUntrusted", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1", "127.0.0.53:53", "[::1]:5353"} {
		if _, err := NewResolver(addr); err != nil {
			t.Errorf("NewResolver(%q) = %v", addr, err)
		}
	}
}
