package feedback

import (
	"os"
	"path/filepath"
	"testing"
)

// A DSN as Postfix and most MTAs send it.
const dsn = "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: bounce+7.m.x@inbound.postern.test\r\n" +
	"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
	"--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not be delivered.\r\n" +
	"--B\r\nContent-Type: message/delivery-status\r\n\r\n" +
	"Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n\r\n" +
	"Final-Recipient: rfc822; gone@example.net\r\nOriginal-Recipient: rfc822;gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
	"Remote-MTA: dns; mx.example.net\r\nDiagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown\r\n\r\n" +
	"Final-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n" +
	"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\n\r\n--B--\r\n"

// An ARF complaint as Microsoft and Yahoo send them.
const arf = "From: staff@hotmail.com\r\nTo: bounce+7.m.x@inbound.postern.test\r\nSubject: complaint about message\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/report; report-type=feedback-report; boundary=\"A\"\r\n\r\n" +
	"--A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n" +
	"--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n" +
	"Original-Mail-From: <bounce+7.m.x@inbound.postern.test>\r\nOriginal-Rcpt-To: <angry@hotmail.com>\r\nArrival-Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n\r\n" +
	"--A\r\nContent-Type: message/rfc822\r\n\r\nFrom: app@example.com\r\nSubject: offer\r\n\r\nbuy\r\n--A--\r\n"

func TestDSN(t *testing.T) {
	n := Read([]byte(dsn))
	if n.Kind != DSN || len(n.Recipients) != 2 {
		t.Fatalf("notice %+v", n)
	}
	want := Recipient{Address: "gone@example.net", Action: "failed", Status: "5.1.1", Diagnostic: "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown"}
	if n.Recipients[0] != want {
		t.Errorf("recipient %+v\nwant      %+v", n.Recipients[0], want)
	}
	if r := n.Recipients[1]; r.Address != "slow@example.net" || r.Action != "delayed" || r.Status != "4.4.1" || r.Diagnostic != "" {
		t.Errorf("second recipient %+v", r)
	}
}

func TestComplaint(t *testing.T) {
	n := Read([]byte(arf))
	if n.Kind != Complaint || n.FeedbackType != "abuse" || n.Complainer != "angry@hotmail.com" {
		t.Errorf("notice %+v", n)
	}
}

func TestOther(t *testing.T) {
	for _, data := range []string{"Subject: out of office\r\n\r\nI am away.\r\n", "", "\x00\x01 not a message",
		"Content-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\nStatus:\r\n\r\nAction:\r\n--B--\r\n"} {
		if n := Read([]byte(data)); n.Kind != Other {
			t.Errorf("%q: %+v, want Other", data, n)
		}
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(dsn))
	f.Add([]byte(arf))
	if data, err := os.ReadFile(filepath.Join("..", "dmarcreport", "testdata", "samples", "dmarc_ruf_report_linkedin.eml")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := Read(data)
		if n.Kind == DSN && len(n.Recipients) == 0 {
			t.Fatal("a DSN without recipients")
		}
	})
}
