package dmarc_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

func sample(t *testing.T, name string) []byte {
	data, err := os.ReadFile(filepath.Join("..", "internal", "dmarcreport", "testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestToken(t *testing.T) {
	key := []byte("key of the installation, 32 byte")
	tok := dmarc.Token(key, 42)
	if id, ok := dmarc.ParseToken(key, tok); !ok || id != 42 {
		t.Errorf("ParseToken(%q) = %d, %v", tok, id, ok)
	}
	if id, ok := dmarc.ParseToken(key, strings.ToUpper(tok)); !ok || id != 42 {
		t.Errorf("upper case: %d, %v", id, ok)
	}
	_, sig, _ := strings.Cut(tok, "-")
	for _, bad := range []string{"43-" + sig, "42", "42-", "x-" + sig, dmarc.Token([]byte("another key"), 42)} {
		if id, ok := dmarc.ParseToken(key, bad); ok {
			t.Errorf("ParseToken(%q) = %d", bad, id)
		}
	}
	if got := dmarc.Record(key, 42, "inbound.postern.example"); got != "v=DMARC1; p=none; rua=mailto:dmarc+"+tok+"@inbound.postern.example" {
		t.Errorf("Record = %s", got)
	}
}

// domainStore is a new bbolt store with an account holding the domain
// example.com, closed when the test ends.
func domainStore(t *testing.T) (*bolt.Store, store.Account, store.Domain) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acct, _ := storetest.Init(t, st)
	d, err := st.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return st, acct, d
}

func TestIngest(t *testing.T) {
	st, _, d := domainStore(t)
	now := time.Now()
	r, err := dmarc.Ingest(st, d, sample(t, "rfc9990-sample.xml"), "upload", now)
	if err != nil || r.Status != store.DMARCParsed || r.Messages != 123 || len(r.Rows) != 1 || r.Rows[0].DKIMPassSelectors[0] != "abc123" {
		t.Fatalf("parsed: %+v, %v", r, err)
	}
	if _, err := dmarc.Ingest(st, d, sample(t, "rfc9990-sample.xml"), "mail", now); !errors.Is(err, store.ErrDuplicateReport) {
		t.Errorf("again: %v, want ErrDuplicateReport", err)
	}
	// About another domain (indemed.com): kept, failed, with the reason.
	r, err = dmarc.Ingest(st, d, sample(t, "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz"), "mail", now)
	if !errors.Is(err, dmarc.ErrWrongDomain) || r.ID == 0 || r.Status != store.DMARCFailed || !strings.Contains(r.Error, "indemed.com") || r.OrgName != "FastMail Pty Ltd" {
		t.Errorf("another domain: %+v, %v", r, err)
	}
	r, err = dmarc.Ingest(st, d, sample(t, "invalid_xml.xml"), "mail", now)
	if err == nil || r.ID == 0 || r.Status != store.DMARCFailed || !strings.Contains(r.Error, "XML syntax error") {
		t.Errorf("invalid: %+v, %v", r, err)
	}
	_, received, _ := st.DMARCReport(d.ID, r.ID)
	if string(received) != string(sample(t, "invalid_xml.xml")) {
		t.Error("the invalid report was not kept as received")
	}
	if list, _ := st.DMARCReports(d.ID); len(list) != 3 {
		t.Errorf("%d reports kept, want 3", len(list))
	}
}

func TestSourcesAndAdvice(t *testing.T) {
	day := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	reports := []store.DMARCReport{
		{Begin: day, End: day.Add(24 * time.Hour), Rows: []store.DMARCRow{
			{SourceIP: "192.0.2.10", Count: 900, Disposition: "none", DKIM: "pass", SPF: "pass", DKIMPassSelectors: []string{"pm20261201e"}},
			{SourceIP: "198.51.100.7", Count: 30, Disposition: "none", DKIM: "fail", SPF: "fail"},
		}},
		{Begin: day.Add(24 * time.Hour), End: day.Add(48 * time.Hour), Rows: []store.DMARCRow{
			{SourceIP: "192.0.2.10", Count: 100, Disposition: "none", DKIM: "pass", SPF: "fail", DKIMPassSelectors: []string{"pm20261201e"}},
			{SourceIP: "203.0.113.5", Count: 5, Disposition: "quarantine", DKIM: "fail", SPF: "pass"},
		}},
	}
	ptr := func(ip string) string {
		return map[string]string{"198.51.100.7": "mail-yw1-f170.google.com", "203.0.113.5": "out.mailer.example.co.uk"}[ip]
	}
	total, pass, sources := dmarc.Sources(reports, map[string]bool{"203.0.113.5": true}, []string{"pm20261201e"}, []netip.Addr{netip.MustParseAddr("203.0.113.5")}, ptr)
	if total != 1035 || pass != 1005 || len(sources) != 3 {
		t.Fatalf("total %d, pass %d, %+v", total, pass, sources)
	}
	s := sources[0]
	if s.IP != "192.0.2.10" || s.Messages != 1000 || s.DmarcPass != 1000 || s.SpfAligned != 900 || s.DkimAligned != 1000 || !s.ViaPostern ||
		!s.FirstSeen.Equal(day) || !s.LastSeen.Equal(day.Add(48*time.Hour)) || s.Dispositions["none"] != 1000 {
		t.Errorf("first source %+v", s)
	}
	if s := sources[1]; s.IP != "198.51.100.7" || s.ViaPostern || s.Known || s.Hostname != "mail-yw1-f170.google.com" || s.Organization != "google.com" {
		t.Errorf("second source %+v", s)
	}
	if s := sources[2]; !s.Known || !s.ViaPostern || s.Organization != "example.co.uk" || s.Dispositions["quarantine"] != 5 {
		t.Errorf("third source %+v", s)
	}
	a := dmarc.Advise("none", total, pass, sources)
	if a.Next != "" || a.Unknown != 1 || !strings.Contains(a.Reason, "1 sources") {
		t.Errorf("with an unknown source: %+v", a)
	}
	a = dmarc.Advise("none", 1000, 1000, sources[:1])
	if a.Next != "quarantine" || a.PassShare < 0.97 {
		t.Errorf("all known, %d/%d passed: %+v", pass, total, a)
	}
	if a := dmarc.Advise("quarantine", 1000, 900, sources[:1]); a.Next != "" || !strings.Contains(a.Reason, "90.0%") {
		t.Errorf("90%% passing: %+v", a)
	}
	if a := dmarc.Advise("", 0, 0, nil); a.Next != "none" {
		t.Errorf("no record: %+v", a)
	}
	if a := dmarc.Advise("reject", 1000, 1000, nil); a.Next != "" {
		t.Errorf("at reject: %+v", a)
	}
}

func TestDigest(t *testing.T) {
	from := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	sources := []dmarc.Source{
		{IP: "192.0.2.10", Hostname: "mail.postern.example", Messages: 900, DmarcPass: 900, ViaPostern: true},
		{IP: "198.51.100.7", Messages: 30, DmarcPass: 0},
	}
	got := dmarc.Digest("example.com", from, from.Add(7*24*time.Hour), 930, 900, sources, dmarc.Advise("none", 930, 900, sources))
	for _, want := range []string{
		"DMARC digest for example.com, 2026-11-23 to 2026-11-30 (UTC)",
		"930 messages claimed to be from example.com; 900 (96.8%) passed DMARC.",
		"Unknown sources: neither Postern nor marked known:\n  198.51.100.7",
		"Top sources:\n  192.0.2.10",
		"Advice: 1 sources that are neither Postern nor marked known",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the digest lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "198.51.100.7") > strings.Index(got, "192.0.2.10") {
		t.Error("unknown sources do not come first")
	}
}
