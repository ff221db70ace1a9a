package main

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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
	// The same from the terminal.
	out, errOut, code := runPostern(t, dir, []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}, "dmarc", "sources", "-domain", "example.com",
		"-from", "1970-01-01", "-to", "2030-01-01")
	if code != 0 || !strings.Contains(out, "192.0.2.123") || !strings.Contains(out, "127 messages, 125 passed DMARC") {
		t.Errorf("dmarc sources: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runPostern(t, dir, []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}, "dmarc", "digest", "-domain", "example.com")
	if code != 0 || !strings.Contains(out, "DMARC digest for example.com") || !strings.Contains(out, "Advice:") {
		t.Errorf("dmarc digest: exit %d\n%s%s", code, out, errOut)
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

// TestLateBounceAndComplaint: a message delivered through the relay, then
// a DSN for it to its return path, records the Bounce, makes the
// recipient inactive and counts it; an ARF complaint for another records
// a SpamComplaint.
func TestLateBounceAndComplaint(t *testing.T) {
	dir := t.TempDir()
	token := liveServer(t, dir)
	dns := dnstest.New(t)
	dns.SetMX("example.net", []dnstest.MX{{Host: "mx.example.net", Pref: 10}})
	dns.SetA("mx.example.net", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{})
	p := startPostern(t, dir, []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_INBOUND_ADDR=127.0.0.1:0", "POSTERN_INBOUND_DOMAIN=inbound.postern.test"}, "serve", "-smtp-addr", "127.0.0.1:0")
	addr, inboundAddr, apiURL := p.listening(t, "smtp"), p.listening(t, "inbound"), "http://"+p.listening(t, "api")

	first := send(t, addr, token, "gone@example.net", "will bounce later")
	second := send(t, addr, token, "angry@example.net", "will be reported")
	stack.WaitFor(t, "both delivered", func() bool { return peer.Received() == 2 })
	returnPath := map[string]string{}
	for _, m := range peer.Messages() {
		if !strings.HasPrefix(m.From, "bounce+") || !strings.HasSuffix(m.From, "@inbound.postern.test") {
			t.Fatalf("MAIL FROM %q is no return path of Postern's", m.From)
		}
		returnPath[m.To[0]] = m.From
	}

	notify := func(to, msg string) {
		t.Helper()
		c, err := smtp.Dial(inboundAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(to, nil); err != nil {
			t.Fatalf("RCPT %s: %v", to, err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, msg)
		if err := w.Close(); err != nil {
			t.Fatalf("DATA: %v", err)
		}
		c.Quit()
	}
	notify(returnPath["gone@example.net"], "From: MAILER-DAEMON@mx.example.net\r\nTo: "+returnPath["gone@example.net"]+"\r\nSubject: Undelivered Mail Returned to Sender\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"+
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; gone@example.net\r\nAction: failed\r\n"+
		"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in local recipient table\r\n\r\n--B--\r\n")
	// The complaint comes through a customer's own Return-Path domain,
	// whose CNAME leads here: the signed return path is taken at it.
	notify(strings.Replace(returnPath["angry@example.net"], "@inbound.postern.test", "@pm-bounces.example.com", 1), "From: staff@example.net\r\nTo: "+returnPath["angry@example.net"]+"\r\nSubject: complaint\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n--A\r\nContent-Type: text/plain\r\n\r\nAbuse report.\r\n"+
		"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\nOriginal-Rcpt-To: <angry@example.net>\r\n\r\n"+
		"--A\r\nContent-Type: message/rfc822\r\n\r\nSubject: will be reported\r\n\r\nhi\r\n--A--\r\n")

	c, err := client.New(apiURL, client.ServerToken, token)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{first: "HardBounce", second: "SpamComplaint"} {
		var d struct {
			Status        string
			MessageEvents []struct{ Type, Recipient string }
		}
		if _, err := c.Do(http.MethodGet, "/messages/outbound/"+id+"/details", nil, &d); err != nil {
			t.Fatal(err)
		}
		if d.Status != "Bounced" || len(d.MessageEvents) != 2 || d.MessageEvents[0].Type != "Delivered" || d.MessageEvents[1].Type != "Bounced" {
			t.Errorf("%s: %+v", want, d)
		}
		var bounces struct {
			TotalCount int
			Bounces    []struct{ Type, Email string }
		}
		if _, err := c.Do(http.MethodGet, "/bounces?count=10&offset=0&messageID="+id, nil, &bounces); err != nil || bounces.TotalCount != 1 || bounces.Bounces[0].Type != want {
			t.Errorf("%s: bounces %+v, %v", want, bounces, err)
		}
	}
	var stats map[string]any
	if _, err := c.Do(http.MethodGet, "/stats/outbound/bounces", nil, &stats); err != nil || stats["HardBounce"] != 1.0 {
		t.Errorf("bounce stats %v, %v", stats, err)
	}
	if _, err := c.Do(http.MethodGet, "/stats/outbound", nil, &stats); err != nil || stats["SpamComplaints"] != 1.0 || stats["Sent"] != 2.0 {
		t.Errorf("outbound stats %v, %v", stats, err)
	}
	// Both recipients are inactive now.
	for _, rcpt := range []string{"gone@example.net", "angry@example.net"} {
		sc := dialSMTP(t, addr)
		sc.login(token)
		sc.expect("250", "MAIL FROM:<app@example.com>")
		sc.expect("550 5.1.1", "RCPT TO:<%s>", rcpt)
		sc.quit()
	}
	// A return path made up for the message is refused.
	forged := strings.Replace(returnPath["gone@example.net"], "bounce+", "bounce+9", 1)
	sc, err := smtp.Dial(inboundAddr)
	if err != nil {
		t.Fatal(err)
	}
	sc.Mail("", nil)
	var se *smtp.SMTPError
	if err := sc.Rcpt(forged, nil); !errors.As(err, &se) || se.Code != 550 {
		t.Errorf("a forged return path: %v", err)
	}
	sc.Close()
	p.stop(t)
}
