package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// row writes a record the way the tests compare them.
func row(r Record) string {
	var auth []string
	for _, d := range r.DKIMResults {
		auth = append(auth, "dkim:"+d.Domain+"/"+d.Selector+"="+d.Result)
	}
	for _, s := range r.SPFResults {
		auth = append(auth, "spf:"+s.Domain+"="+s.Result)
	}
	return fmt.Sprintf("%s x%d %s dkim=%s spf=%s from=%s env=%s [%s]", r.SourceIP, r.Count, r.Disposition, r.DKIM, r.SPF, r.HeaderFrom, r.EnvelopeFrom, strings.Join(auth, " "))
}

// TestSamples reads each sample report, as sent, to its exact rows.
func TestSamples(t *testing.T) {
	for _, c := range []struct {
		file, org, id, domain, policy string
		begin, end                    int64
		rows                          []string
	}{
		{"example.net!example.com!1529366400!1529452799.xml", "example.net", "b043f0e264cf4ea995e93765242f6dfb", "example.com", "none", 1529366400, 1529452799,
			[]string{"199.230.200.36 x1 none dkim=fail spf=fail from=example.com env=example.com []"}},
		{"fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz", "FastMail Pty Ltd", "102675056", "indemed.com", "none", 1516060800, 1516147199,
			[]string{"104.195.80.20 x1 none dkim=fail spf=fail from=example.com env=example.com [spf:example.com=softfail]"}},
		{"estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip", "XYZ Corporation", "2940", "example.com", "none", 1536853302, 1536939702,
			[]string{"148.243.137.254 x1 none dkim=fail spf=fail from=example.com env= []"}},
		{"old_draft_from_wiki.xml", "acme.com", "9391651994964116463", "example.com", "none", 1335571200, 1335657599,
			[]string{"72.150.241.94 x2 none dkim=fail spf=pass from=example.com env= [dkim:example.com/=fail spf:example.com=pass]"}},
		{"protection.outlook.com!example.com!1711756800!1711843200.xml", "Outlook.com", "cfeafefe4129445e8c81018bd9177197", "example.com", "none", 1711756800, 1711843200,
			[]string{"100.24.188.149 x1 none dkim=fail spf=fail from=example.com env=example.com [spf:example.com=fail]"}},
		{"rfc9990-sample.xml", "Sample Reporter", "3v98abbp8ya9n3va8yr8oa3ya", "example.com", "quarantine", 302832000, 302918399,
			[]string{"192.0.2.123 x123 pass dkim=pass spf=fail from=example.com env=example.com [dkim:example.com/abc123=pass spf:example.com=fail]"}},
	} {
		t.Run(c.file, func(t *testing.T) {
			r, xmlData, err := Read(sample(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if r.OrgName != c.org || r.ReportID != c.id || r.Policy.Domain != c.domain || r.Policy.P != c.policy ||
				!r.Begin.Equal(time.Unix(c.begin, 0)) || !r.End.Equal(time.Unix(c.end, 0)) {
				t.Errorf("report %+v", r)
			}
			var rows []string
			for _, rec := range r.Records {
				rows = append(rows, row(rec))
			}
			if strings.Join(rows, "\n") != strings.Join(c.rows, "\n") {
				t.Errorf("rows\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(c.rows, "\n"))
			}
			if !bytes.Contains(xmlData, []byte("<feedback")) {
				t.Error("the XML kept is not the report's")
			}
		})
	}
}

func TestInvalidSample(t *testing.T) {
	_, _, err := Read(sample(t, "invalid_xml.xml"))
	if !errors.Is(err, ErrMalformed) || err.Error() != "the report is not valid DMARC XML: XML syntax error on line 5: expected attribute name in element" {
		t.Errorf("error %q", err)
	}
}

func TestFailureSample(t *testing.T) {
	data := sample(t, "dmarc_ruf_report_linkedin.eml")
	if _, _, err := Read(data); !errors.Is(err, ErrNoReport) {
		t.Errorf("an aggregate report was read from a failure report: %v", err)
	}
	f, err := ReadFailure(data)
	if err != nil {
		t.Fatal(err)
	}
	want := Failure{FeedbackType: "auth-failure", SourceIP: netip.MustParseAddr("10.10.10.10"), ReportedDomain: "example.com", HeaderFrom: "example.com",
		ArrivalDate: time.Date(2019, 4, 30, 2, 9, 0, 0, time.UTC), AuthFailure: "dmarc", DeliveryResult: "delivered", OriginalRcptTo: "recipient@linkedin.com"}
	if f != want {
		t.Errorf("failure %+v\nwant    %+v", f, want)
	}
}

// mailWith wraps data as a receiver's message: an attachment labelled
// contentType, base64.
func mailWith(contentType, name string, data []byte) []byte {
	return []byte("From: noreply-dmarc-support@google.com\r\nTo: dmarc@postern.test\r\nSubject: Report domain: example.com\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n" +
		"--b\r\nContent-Type: " + contentType + "; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(data) + "\r\n--b--\r\n")
}

// TestInMessages: reports inside messages, however labelled.
func TestInMessages(t *testing.T) {
	zipped := sample(t, "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip")
	gz := sample(t, "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz")
	plain := sample(t, "protection.outlook.com!example.com!1711756800!1711843200.xml")
	for name, msg := range map[string][]byte{
		"zip as application/zip (Google)":   mailWith("application/zip", "google.com!example.com!1.zip", zipped),
		"zip as application/octet-stream":   mailWith("application/octet-stream", "report.zip", zipped),
		"gzip as application/gzip":          mailWith("application/gzip", "report.xml.gz", gz),
		"gzip labelled text/plain":          mailWith("text/plain", "report", gz),
		"XML as application/xml":            mailWith("application/xml", "report.xml", plain),
		"the body itself, no multipart":     append([]byte("From: a@b\r\nContent-Type: text/xml\r\n\r\n"), plain...),
		"gzip body, base64, labelled oddly": []byte("From: a@b\r\nContent-Type: application/x-gzip-compressed\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(gz) + "\r\n"),
	} {
		if r, _, err := Read(msg); err != nil || len(r.Records) != 1 {
			t.Errorf("%s: %+v, %v", name, r, err)
		}
	}
}

func TestBombs(t *testing.T) {
	// A gzip that expands past MaxExpanded.
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write([]byte("<feedback>"))
	zw.Write(bytes.Repeat([]byte(" "), MaxExpanded+10))
	zw.Close()
	if _, _, err := Read(gz.Bytes()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("gzip bomb (%d bytes): %v", gz.Len(), err)
	}
	// A zip whose file expands past it.
	var zbuf bytes.Buffer
	zwr := zip.NewWriter(&zbuf)
	f, _ := zwr.Create("report.xml")
	f.Write(bytes.Repeat([]byte(" "), MaxExpanded+10))
	zwr.Close()
	if _, _, err := Read(zbuf.Bytes()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("zip bomb (%d bytes): %v", zbuf.Len(), err)
	}
	// A zip of two files.
	zbuf.Reset()
	zwr = zip.NewWriter(&zbuf)
	zwr.Create("a.xml")
	zwr.Create("b.xml")
	zwr.Close()
	if _, _, err := Read(zbuf.Bytes()); !errors.Is(err, ErrNoReport) {
		t.Errorf("two files: %v", err)
	}
	if _, _, err := Read(make([]byte, MaxInput+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	for _, name := range []string{"example.net!example.com!1529366400!1529452799.xml", "rfc9990-sample.xml", "invalid_xml.xml"} {
		data, _ := os.ReadFile(filepath.Join("testdata", "samples", name))
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, err := Read(data)
		if err == nil && (r.OrgName == "" || r.Policy.Domain == "") {
			t.Fatalf("accepted a report without org or domain: %+v", r)
		}
		ReadFailure(data)
	})
}
