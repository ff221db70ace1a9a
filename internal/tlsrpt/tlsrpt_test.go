package tlsrpt_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/testutil/dkimtest"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/tlsrpt"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

func TestParseRecord(t *testing.T) {
	rec, err := tlsrpt.ParseRecord("v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1, ftp://x.example")
	if err != nil || len(rec.RUA) != 2 || rec.RUA[0] != "mailto:tlsrpt@example.com" || rec.RUA[1] != "https://reports.example.com/v1" {
		t.Errorf("ParseRecord = %+v, %v", rec, err)
	}
	for _, in := range []string{"", "v=TLSRPTv2; rua=mailto:a@b.c", "rua=mailto:a@b.c", "v=TLSRPTv1;", "v=TLSRPTv1; rua=ftp://x", "v=TLSRPTv1; rua=mailto:nobody"} {
		if rec, err := tlsrpt.ParseRecord(in); err == nil {
			t.Errorf("ParseRecord(%q) = %+v, want an error", in, rec)
		}
	}
	if _, err := tlsrpt.FindRecord([]string{"v=TLSRPTv1; rua=mailto:a@b.c", "v=TLSRPTv1; rua=mailto:d@e.f"}); err == nil {
		t.Error("two records were accepted")
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=TLSRPTv1; rua=mailto:tlsrpt@example.com")
	f.Add("v=TLSRPTv1;rua=https://r.example/x,mailto:a@b")
	f.Fuzz(func(t *testing.T, txt string) {
		rec, err := tlsrpt.ParseRecord(txt)
		if err == nil && len(rec.RUA) == 0 {
			t.Fatalf("%q: a record without addresses", txt)
		}
		for _, u := range rec.RUA {
			if !strings.HasPrefix(u, "mailto:") && !strings.HasPrefix(u, "https://") {
				t.Fatalf("%q: kept %q", txt, u)
			}
		}
	})
}

// day is a day's counts to dest.example: 7 sessions met the MTA-STS
// policy, 2 failed on a certificate for another name.
func day(t *testing.T) store.TLSReportDay {
	t.Helper()
	d := store.TLSReportDay{Day: time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC), Domain: "dest.example"}
	sts := store.TLSPolicyRef{Type: store.TLSPolicySTS, Strings: []string{"version: STSv1", "mode: testing", "mx: mx.dest.example", "max_age: 86400"}, MXHosts: []string{"mx.dest.example"}}
	d.Add(store.TLSResult{Policy: sts, Count: 7})
	d.Add(store.TLSResult{Policy: sts, Count: 2, Failure: &store.TLSFailure{ResultType: "certificate-host-mismatch",
		SendingIP: "192.0.2.1", ReceivingMX: "mx.dest.example", ReceivingIP: "198.51.100.7", Reason: "x509: certificate is valid for other.example"}})
	return d
}

// checkReport checks a gzipped report against day's counts.
func checkReport(t *testing.T, gz []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	var r map[string]any
	if err := json.NewDecoder(zr).Decode(&r); err != nil {
		t.Fatal(err)
	}
	dr := r["date-range"].(map[string]any)
	if r["organization-name"] != "example.com" || dr["start-datetime"] != "2026-12-03T00:00:00Z" || dr["end-datetime"] != "2026-12-03T23:59:59Z" ||
		r["report-id"] != "2026-12-03.dest.example@example.com" || r["contact-info"] != "postmaster@example.com" {
		t.Errorf("report %v", r)
	}
	policies := r["policies"].([]any)
	if len(policies) != 1 {
		t.Fatalf("policies %v", policies)
	}
	p := policies[0].(map[string]any)
	pol, sum := p["policy"].(map[string]any), p["summary"].(map[string]any)
	if pol["policy-type"] != "sts" || pol["policy-domain"] != "dest.example" || len(pol["policy-string"].([]any)) != 4 || pol["mx-host"].([]any)[0] != "mx.dest.example" {
		t.Errorf("policy %v", pol)
	}
	if sum["total-successful-session-count"] != 7.0 || sum["total-failure-session-count"] != 2.0 {
		t.Errorf("summary %v, want 7 and 2", sum)
	}
	fd := p["failure-details"].([]any)[0].(map[string]any)
	if fd["result-type"] != "certificate-host-mismatch" || fd["failed-session-count"] != 2.0 || fd["receiving-mx-hostname"] != "mx.dest.example" ||
		fd["sending-mta-ip"] != "192.0.2.1" || fd["receiving-ip"] != "198.51.100.7" {
		t.Errorf("failure details %v", fd)
	}
}

// world is a store with yesterday's counts, DNS for dest.example, and a
// sender; the test adds where reports go.
type world struct {
	st     *bolt.Store
	dns    *dnstest.Server
	sender *tlsrpt.Sender
	logs   *bytes.Buffer
}

func newWorld(t *testing.T, sinkPort int) *world {
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	d := day(t)
	var results []store.TLSResult
	for _, p := range d.Policies {
		results = append(results, store.TLSResult{Day: d.Day, Domain: d.Domain, Policy: p.TLSPolicyRef, Count: p.Success})
		for _, f := range p.Failures {
			results = append(results, store.TLSResult{Day: d.Day, Domain: d.Domain, Policy: p.TLSPolicyRef, Failure: &f.TLSFailure, Count: f.Count})
		}
	}
	if err := st.AddTLSResults(results); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.New(t)
	dns.SetMX("reports.example", []dnstest.MX{{Host: "mx.reports.example", Pref: 10}})
	dns.SetA("mx.reports.example", netip.MustParseAddr("127.0.0.1"))
	resolver := relay.NewResolver(dns.Addr())
	mx, err := relay.NewMXDeliverer(relay.MXConfig{ClientConfig: relay.ClientConfig{Hostname: "example.com"}, Resolver: resolver, Port: sinkPort, AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	dialer := &privateaddr.Dialer{Resolve: resolver.LookupIP, AllowPrivate: true}
	logs := &bytes.Buffer{}
	return &world{st: st, dns: dns, logs: logs, sender: &tlsrpt.Sender{
		Store: st, TXT: resolver, Mail: mx,
		HTTP:      &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
		Submitter: "example.com",
		Now:       func() time.Time { return time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC) },
		Log:       slog.New(slog.NewTextHandler(logs, nil)),
	}}
}

func TestReportByMail(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	w := newWorld(t, sink.Port())
	w.dns.SetTXT("_smtp._tls.dest.example", "v=TLSRPTv1; rua=mailto:tls-reports@reports.example")
	// The submitter's domain has DKIM keys on some account: the report
	// is signed with them.
	keys := dkimtest.Keys(t)
	acct, _ := storetest.Init(t, w.st)
	if _, err := w.st.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com", Keys: keys.List()}, time.Now()); err != nil {
		t.Fatal(err)
	}

	w.sender.SendDue(context.Background())
	msgs := sink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the sink got %d messages; logs:\n%s", len(msgs), w.logs)
	}
	m := msgs[0]
	if m.From != "tlsrpt-noreply@example.com" || len(m.To) != 1 || m.To[0] != "tls-reports@reports.example" {
		t.Errorf("envelope %s → %v", m.From, m.To)
	}
	for _, v := range dkimtest.Verify(t, m.Data, dkimtest.Records(keys)) {
		if v.Err != nil || v.Domain != "example.com" {
			t.Errorf("DKIM: %s: %v", v.Domain, v.Err)
		}
	}
	if bare := bytes.Count(m.Data, []byte("\n")) - bytes.Count(m.Data, []byte("\r\n")); bare != 0 {
		t.Errorf("%d bare line feeds in the message", bare)
	}
	e, err := gomessage.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	if mt, params, _ := e.Header.ContentType(); mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Errorf("Content-Type %s %v", mt, params)
	}
	if e.Header.Get("TLS-Report-Domain") != "dest.example" || e.Header.Get("TLS-Report-Submitter") != "example.com" ||
		!strings.HasPrefix(e.Header.Get("Subject"), "Report Domain: dest.example Submitter: example.com Report-ID: <2026-12-03.dest.example@example.com>") {
		t.Errorf("header %v", e.Header)
	}
	var found bool
	e.Walk(func(path []int, part *gomessage.Entity, err error) error {
		if mt, _, _ := part.Header.ContentType(); mt == "application/tlsrpt+gzip" {
			_, params, _ := part.Header.ContentDisposition()
			if params["filename"] != "example.com!dest.example!1796256000!1796342400!20261203.json.gz" {
				t.Errorf("filename %q", params["filename"])
			}
			gz, _ := io.ReadAll(part.Body)
			checkReport(t, gz)
			found = true
		}
		return nil
	})
	if !found {
		t.Fatalf("no application/tlsrpt+gzip part:\n%s", m.Data)
	}
	// Sent: forgotten, and not sent again.
	if days, _ := w.st.TLSReportDays(time.Now()); len(days) != 0 {
		t.Errorf("%d reports left", len(days))
	}
	w.sender.SendDue(context.Background())
	if sink.Received() != 1 {
		t.Errorf("the report was sent %d times", sink.Received())
	}
}

func TestReportByHTTPS(t *testing.T) {
	var mu sync.Mutex
	var got [][]byte
	var contentType string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, contentType = append(got, body), r.Header.Get("Content-Type")
		mu.Unlock()
	}))
	defer srv.Close()
	w := newWorld(t, 1)
	w.sender.HTTP = srv.Client()
	w.dns.SetTXT("_smtp._tls.dest.example", "v=TLSRPTv1; rua="+srv.URL+"/tlsrpt")
	w.sender.SendDue(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || contentType != "application/tlsrpt+gzip" {
		t.Fatalf("%d posts, Content-Type %q; logs:\n%s", len(got), contentType, w.logs)
	}
	checkReport(t, got[0])
}

func TestReportKeptUntilSent(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{Data: func([]byte) error {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}
	}})
	w := newWorld(t, sink.Port())
	w.dns.SetTXT("_smtp._tls.dest.example", "v=TLSRPTv1; rua=mailto:tls-reports@reports.example")
	w.sender.SendDue(context.Background())
	if days, _ := w.st.TLSReportDays(time.Now()); len(days) != 1 {
		t.Fatalf("a deferred report was not kept: %d left", len(days))
	}
	// Past GiveUpAfter it is dropped, and the log says so.
	w.sender.Now = func() time.Time { return time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC) }
	w.sender.SendDue(context.Background())
	if days, _ := w.st.TLSReportDays(time.Now()); len(days) != 0 || !strings.Contains(w.logs.String(), "giving up") {
		t.Errorf("%d reports left; logs:\n%s", len(days), w.logs)
	}
}

func TestNoRecordNoReport(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	w := newWorld(t, sink.Port())
	w.sender.SendDue(context.Background())
	if sink.Connections() != 0 {
		t.Error("a report went to a domain that asks for none")
	}
	if days, _ := w.st.TLSReportDays(time.Now()); len(days) != 0 {
		t.Errorf("%d reports left for a domain that asks for none", len(days))
	}
}
