package api_test

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postern/postern/api"
)

func dmarcSample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "internal", "dmarcreport", "testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDMARCUpload: reports uploaded as sent (gzip, zip, a whole message),
// counted once, kept as failed when about another domain, and read back
// as JSON and as the XML received.
func TestDMARCUpload(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	d := e.createDomain(tok, "example.com")
	upload := func(body []byte) (int, []byte) {
		req, _ := http.NewRequest(http.MethodPost, e.URL+fmt.Sprintf("/domains/%d/dmarc/reports", d.ID), bytes.NewReader(body))
		req.Header.Set(accountHeader, tok)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	zipped := dmarcSample(t, "estadocuenta1.infonacot.gob.mx!example.com!1536853302!1536939702!2940.xml.zip")
	status, body := upload(zipped)
	var r api.DMARCReportSummary
	decodeInto(t, status, body, &r)
	if r.Status != "parsed" || r.Organization != "XYZ Corporation" || r.ExternalID != "2940" || r.Messages != 1 || r.Via != "upload" {
		t.Errorf("uploaded %+v", r)
	}
	status, body = upload(zipped)
	wantError(t, status, body, 422, 1402)
	status, body = upload(dmarcSample(t, "fastmail.com!example.com!1516060800!1516147199!102675056.xml.gz"))
	wantError(t, status, body, 422, 1401)
	if !strings.Contains(string(body), "indemed.com") {
		t.Errorf("the refusal names no domain: %s", body)
	}
	msg := []byte("From: a@b.example\r\nContent-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	status, body = upload(append(msg, []byte(base64.StdEncoding.EncodeToString(zipOf(t, dmarcSample(t, "rfc9990-sample.xml"))))...))
	if status != 200 {
		t.Errorf("a whole message: %d %s", status, body)
	}

	var list api.DMARCReportList
	status, body = e.account(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc/reports", d.ID), tok, nil)
	decodeInto(t, status, body, &list)
	if list.TotalCount != 3 || list.Reports[1].Status != "failed" {
		t.Errorf("list %+v", list)
	}
	var details api.DMARCReportDetails
	status, body = e.account(http.MethodGet, fmt.Sprintf("/domains/%d/dmarc/reports/%d", d.ID, r.ID), tok, nil)
	decodeInto(t, status, body, &details)
	if len(details.Rows) != 1 || details.Rows[0].SourceIP != "148.243.137.254" {
		t.Errorf("details %+v", details)
	}
	req, _ := http.NewRequest(http.MethodGet, e.URL+fmt.Sprintf("/domains/%d/dmarc/reports/%d?format=xml", d.ID, r.ID), nil)
	req.Header.Set(accountHeader, tok)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	xmlData, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/xml" || !bytes.Contains(xmlData, []byte("<report_id>2940</report_id>")) {
		t.Errorf("?format=xml: %s %.200s", resp.Header.Get("Content-Type"), xmlData)
	}
}

func zipOf(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	f, _ := zw.Create("report.xml")
	f.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
