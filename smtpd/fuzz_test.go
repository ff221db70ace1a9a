package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// intakeSeeds are the seed messages of FuzzIntake. Each is also a file of
// testdata/fuzz/FuzzIntake (written by TestWriteIntakeSeeds), so that
// plain `go test` runs them too and the fuzzer starts from them.
var intakeSeeds = []struct{ name, raw string }{
	{"crlf-postmark", "Received: from laptop ([10.0.0.5]) by app.example; Fri, 28 Feb 2025 09:00:00 +0000\r\n" +
		"From: \"App\" <app@example.com>\r\n" +
		"To: Alice <alice@example.net>, bob@example.org\r\n" +
		"Cc: carol@example.net\r\n" +
		"Bcc: secret@example.net\r\n" +
		"Subject: Your receipt\r\n" +
		"Date: Fri, 28 Feb 2025 10:00:00 +0100\r\n" +
		"Message-ID: <client-chosen@example.com>\r\n" +
		"X-PM-Tag: receipt\r\n" +
		"X-PM-Metadata-Client-ID: 42\r\n" +
		"X-PM-Message-Stream: outbound\r\n" +
		"X-PM-TrackOpens: true\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Thank you for your order.\r\n" +
		"\r\n" +
		"Bcc: this line is body text\r\n"},
	{"lf-only", "From: app@example.com\nTo: alice@example.net\nBcc: b@example.net\nX-PM-Tag: lf\nx-pm-keepid: true\nMessage-Id: <lf@example.com>\nSubject: bare LF\n\nline one\nline two\n"},
	{"folded", "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel;\r\n" +
		"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
		"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n" +
		"Subject: a subject\r\n that is\r\n\tfolded\r\n" +
		"To: one@example.net,\r\n two@example.net\r\n" +
		"Bcc: hidden@example.net,\r\n" +
		"\tother@example.net\r\n" +
		"X-PM-Metadata-Long:\r\n value on the next line\r\n" +
		"bcc:\r\n lower@example.net\r\n" +
		"\r\n" +
		"body\r\n"},
	{"encoded-words", "From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.com>\r\n" +
		"Subject: =?UTF-8?B?w4l0w6kgw6AgUGFyaXM=?= =?ISO-8859-1?Q?caf=E9?=\r\n" +
		"To: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.net>\r\n" +
		"X-PM-Tag: =?utf-8?q?r=C3=A9sum=C3=A9?=\r\n" +
		"X-PM-Metadata-City: =?x-unknown?B?S8O2bG4=?=\r\n" +
		"\r\n" +
		"=?UTF-8?B?bm90IGRlY29kZWQ=?=\r\n"},
	{"keepid", "X-PM-KeepID: TRUE\r\n" +
		"Message-ID: <first@example.com>\r\n" +
		"message-id: <second@example.com>\r\n" +
		"Date: Fri, 28 Feb 2025 10:00:00 +0100\r\n" +
		"\r\n" +
		"body"},
	// An empty Message-ID with X-PM-KeepID: it once stayed beside the
	// stamp's, giving the message two Message-ID fields.
	{"keepid-empty", "X-PM-KeepID: true\r\nMessage-ID:\r\nmessage-id: \r\n \r\nDate: Fri, 28 Feb 2025 10:00:00 +0100\r\n\r\nbody"},
	// Lines past RFC 5322's 998 characters, a long folded field, many
	// fields, the longest tag allowed. (Kept to a few kilobytes: the
	// fuzzer minimises every new input, and that costs time per byte.)
	{"huge-header", "Subject: " + strings.Repeat("long subject ", 150) + "\r\n" +
		"X-Long: " + strings.Repeat("a", 1000) + "\r\n" + strings.Repeat(" "+strings.Repeat("b", 76)+"\r\n", 20) +
		strings.Repeat("X-Many: header\r\n", 50) +
		"X-PM-Tag: " + strings.Repeat("t", maxTagLength) + "\r\n" +
		"\r\n" + strings.Repeat("body line\r\n", 10)},
	{"nul-bytes", "Subject: nul\x00inside\r\n" +
		"X-PM\x00-Tag: not a field name\r\n" +
		"From: a@example.com\r\n" +
		"\r\n" +
		"body\x00with\x00nuls\r\n"},
	{"only-crlf", "\r\n"},
	{"empty", ""},
	{"no-separator", "From: a@example.com\r\nSubject: no blank line\r\nHello, this is the body.\r\nX-PM-Tag: in the body\r\n"},
	{"headers-only-no-newline", "From: a@example.com\r\nX-PM-Tag: t\r\nBcc: b@example.net"},
	{"non-header-line", "From: a@example.com\r\nthis is not a header\r\nBcc: late@example.net\r\n\r\nbody"},
	{"mixed-endings", "From: a@example.com\r\nTo: b@example.net\nBcc: c@example.net\r\n\nSubject: after the blank line\r\n\r\n"},
	{"bare-cr", "Subject: one\rBcc: x@example.net\r\nX-PM-Tag: cr\r\r\nbody\r"},
	{"multipart", "From: app@example.com\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b1\"\r\n" +
		"X-PM-Message-Stream: broadcast\r\n" +
		"\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nHello\r\n" +
		"--b1\r\nContent-Type: text/html\r\nBcc: part header\r\n\r\n<p>Hello</p>\r\n--b1--\r\n"},
	{"tag-too-long", "X-PM-Tag: " + strings.Repeat("é", maxTagLength+1) + "\r\n\r\nbody"},
	// SMTP smuggling in the body: every bare line end is stored as CRLF.
	{"body-bare-line-ends", "From: a@example.com\r\nSubject: smuggling\r\n\r\n" +
		"hello\n.\nMAIL FROM:<x@y.example>\r.\r\nRCPT TO:<v@example.net>\r\r\nDATA\n\r.\rend\r"},
}

// FuzzIntake feeds intake arbitrary messages. Whatever the client sends,
// intake must not panic, and the message it stores must start with the
// Received field, carry no X-PM-* or Bcc field and exactly one Message-ID
// in its header section, and end with the client's body, its line endings
// made CRLF: the stored body holds no bare CR and no bare LF, so no server
// downstream can find an end of DATA in it (SMTP smuggling).
func FuzzIntake(f *testing.F) {
	for _, s := range intakeSeeds {
		f.Add([]byte(s.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		before := bytes.Clone(raw)
		r, err := intake(raw, intakeStamp)
		if !bytes.Equal(raw, before) {
			t.Fatal("intake modified its input")
		}
		if err != nil {
			switch {
			case errors.Is(err, errTagTooLong):
			case errors.Is(err, errBareCR):
				if !bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
					t.Fatalf("errBareCR for a message without a bare CR: %q", raw)
				}
			default:
				t.Fatalf("intake: unexpected error %v", err)
			}
			return
		}
		checkStoredForm(t, raw, r.stored, intakeStamp)
		header, body, _ := splitHeader(r.stored)
		if i := bareLineEndAt(body); i >= 0 {
			t.Fatalf("the stored body has a bare CR or LF at %d: %q", i, body)
		}
		if !r.keptClientID {
			if r.messageIDHdr != intakeStamp.messageID {
				t.Errorf("Message-ID %q not kept from the client, yet not the stamp's", r.messageIDHdr)
			}
			found := false
			for _, line := range header {
				found = found || line == strings.TrimSuffix(addedMessageID, "\r\n")
			}
			if !found {
				t.Errorf("the stamp's Message-ID field is not in the stored header:\n%q", r.stored)
			}
		} else if r.messageIDHdr == "" {
			t.Errorf("the client's Message-ID was kept, but it is empty")
		}
		if r.stream == "" {
			t.Error("empty stream")
		}
		if n := len([]rune(r.tag)); n > maxTagLength {
			t.Errorf("a tag of %d characters was accepted", n)
		}
	})
}

// TestWriteIntakeSeeds writes intakeSeeds into testdata/fuzz/FuzzIntake in
// the `go test fuzz v1` format. Run it after changing the seeds:
//
//	POSTERN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteIntakeSeeds ./smtpd/
func TestWriteIntakeSeeds(t *testing.T) {
	if os.Getenv("POSTERN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set POSTERN_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzIntake")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzIntake")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range intakeSeeds {
		if err := os.WriteFile(filepath.Join(dir, s.name), seedFile(s.raw), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// seedFile is one corpus file of a []byte fuzz argument.
func seedFile(raw string) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", raw)
}

// TestIntakeSeedFiles checks that every seed has its corpus file, up to
// date, so the fuzzer and plain `go test` start from the same messages.
func TestIntakeSeedFiles(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzIntake")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 8 {
		t.Errorf("%d files in %s, want at least 8", len(entries), dir)
	}
	for _, s := range intakeSeeds {
		got, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			t.Errorf("seed %s: %v (run TestWriteIntakeSeeds)", s.name, err)
			continue
		}
		if !bytes.Equal(got, seedFile(s.raw)) {
			t.Errorf("seed %s: the file differs from intakeSeeds (run TestWriteIntakeSeeds)", s.name)
		}
	}
}
