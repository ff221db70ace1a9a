package main

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

func dmarcSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "dmarcreport", "testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// reportMail is a report as a receiver mails it: a text part and the
// report as an attachment labelled contentType.
func reportMail(from, to, contentType, filename string, report []byte) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: Report domain: example.com\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"r\"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n--r\r\n" +
		"Content-Type: " + contentType + "; name=\"" + filename + "\"\r\nContent-Disposition: attachment; filename=\"" + filename + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(report) + "\r\n--r--\r\n"
}

// TestDMARCReportsByMail sends reports to the real inbound listener as
// Google sends them (an application/zip attachment) and as others do
// (gzip, octet-stream), reads the sources over the API, and checks that
// the listener relays nothing: every other recipient is refused.
func TestDMARCReportsByMail(t *testing.T) {
	dir := t.TempDir()
	inst, data := initialized(t, dir)
	st, err := bolt.Open(filepath.Join(data, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := dkim.Generate("example.com")
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.CreateDomain(store.Domain{AccountID: inst.AccountID, Name: "example.com", Keys: keys}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	dns := dnstest.New(t)

	p := startPostern(t, dir, []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_INBOUND_ADDR=127.0.0.1:0", "POSTERN_INBOUND_DOMAIN=inbound.postern.test",
		"POSTERN_SENDING_IPS=192.0.2.123"}, "serve", "-smtp-addr", "127.0.0.1:0")
	inboundAddr, apiURL := p.listening(t, "inbound"), "http://"+p.listening(t, "api")
	c, err := client.New(apiURL, client.AccountToken, inst.AccountToken)
	if err != nil {
		t.Fatal(err)
	}
	var rec api.DMARCRecord
	if _, err := c.Do(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc", d.ID), nil, &rec); err != nil {
		t.Fatal(err)
	}
	_, rua, ok := strings.Cut(rec.Value, "rua=mailto:")
	if rec.Name != "_dmarc.example.com" || !ok || !strings.HasPrefix(rua, "dmarc+") || !strings.HasSuffix(rua, "@inbound.postern.test") ||
		rec.ExternalAuthorization.Name != "example.com._report._dmarc.inbound.postern.test" || rec.Published != nil || rec.Verified {
		t.Fatalf("record %+v", rec)
	}
	// Published as asked, the record verifies.
	dns.SetTXT("_dmarc.example.com", rec.Value)
	if _, err := c.Do(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDmarc", d.ID), nil, &rec); err != nil || !rec.Verified || rec.Published == nil || rec.Advice.Current != "none" {
		t.Errorf("after publishing: %+v, %v", rec, err)
	}

	// As receivers do: STARTTLS (Postern's certificate is self-signed
	// here), then one message.
	send := func(from, to, msg string) error {
		c, err := smtp.DialStartTLS(inboundAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Mail(from, nil); err != nil {
			return err
		}
		if err := c.Rcpt(to, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, msg); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	for _, m := range []struct{ contentType, file, sample string }{
		{"application/zip", "google.com!example.com!1536853302!1536939702.zip", "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip"},
		{"application/gzip", "outlook.xml.gz", "protection.outlook.com!example.com!1711756800!1711843200.xml"},
		{"application/octet-stream", "report.xml", "rfc9990-sample.xml"},
		{"application/octet-stream", "draft.xml", "old_draft_from_wiki.xml"},
	} {
		report := dmarcSample(t, m.sample)
		if m.contentType == "application/gzip" {
			report = gzipped(t, report)
		}
		if err := send("noreply-dmarc-support@google.com", rua, reportMail("noreply-dmarc-support@google.com", rua, m.contentType, m.file, report)); err != nil {
			t.Fatalf("%s: %v", m.file, err)
		}
	}
	// The same report again counts once; a broken one is kept as failed.
	if err := send("a@b.example", rua, reportMail("a@b.example", rua, "application/octet-stream", "again.xml", dmarcSample(t, "rfc9990-sample.xml"))); err != nil {
		t.Fatal(err)
	}
	if err := send("a@b.example", rua, reportMail("a@b.example", rua, "text/xml", "bad.xml", dmarcSample(t, "invalid_xml.xml"))); err != nil {
		t.Fatal(err)
	}

	var sources api.DMARCSources
	if _, err := c.Do(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc/sources?fromdate=1970-01-01&todate=2030-01-01", d.ID), nil, &sources); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range sources.Sources {
		got[s.IP] = fmt.Sprintf("%d pass=%d via=%v", s.Messages, s.DmarcPass, s.ViaPostern)
	}
	want := map[string]string{"192.0.2.123": "123 pass=123 via=true", "72.150.241.94": "2 pass=2 via=false",
		"148.243.137.254": "1 pass=0 via=false", "100.24.188.149": "1 pass=0 via=false"}
	if fmt.Sprint(got) != fmt.Sprint(want) || sources.TotalMessages != 127 || sources.DmarcPass != 125 {
		t.Errorf("sources %v (total %d, pass %d)\nwant %v", got, sources.TotalMessages, sources.DmarcPass, want)
	}
	var reports api.DMARCReportList
	if _, err := c.Do(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc/reports", d.ID), nil, &reports); err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, r := range reports.Reports {
		if r.Status == "failed" {
			failed++
			if !strings.Contains(r.Error, "XML syntax error") || r.Via != "mail" {
				t.Errorf("failed report %+v", r)
			}
		}
	}
	if reports.TotalCount != 5 || failed != 1 {
		t.Errorf("%d reports, %d failed; want 4 parsed and 1 failed: %+v", reports.TotalCount, failed, reports.Reports)
	}

	// No open relay: every recipient but a report address is refused,
	// a forged token too, and nothing was queued for delivery.
	forged := "dmarc+" + fmt.Sprint(d.ID) + "-aaaaaaaaaaaaaaaa@inbound.postern.test"
	for _, to := range []string{"someone@example.net", "postmaster@inbound.postern.test", forged, strings.Replace(rua, "inbound.postern.test", "example.net", 1),
		"bounce+123@inbound.postern.test", "someone@example.net@inbound.postern.test"} {
		err := send("spammer@example.org", to, "Subject: relay me\r\n\r\nspam\r\n")
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "No such recipient here" {
			t.Errorf("RCPT %s: %v, want 550 5.1.1 No such recipient here", to, err)
		}
	}
	p.stop(t)
	st, err = bolt.Open(filepath.Join(data, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if q, err := st.QueueStats(); err != nil || len(q) != 0 {
		t.Errorf("something was queued: %+v, %v", q, err)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
