package smtpd

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/message"
)

// intakeStamp is a fixed stamp, the way session.Data makes one.
var intakeStamp = stamp{
	received:  "Received: from app.example ([192.0.2.10])\r\n\tby mx.test.example (Postern) with ESMTPSA id 0b6d2a3e;\r\n\tSat, 01 Mar 2025 12:00:00 +0000",
	messageID: "<0b6d2a3e-1c5f-4d0e-9a55-8f1e0c3b7d21@mx.test.example>",
	date:      time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
}

// Pieces intake adds, with the fixed stamp.
const (
	addedReceived  = "Received: from app.example ([192.0.2.10])\r\n\tby mx.test.example (Postern) with ESMTPSA id 0b6d2a3e;\r\n\tSat, 01 Mar 2025 12:00:00 +0000\r\n"
	addedMessageID = "Message-ID: <0b6d2a3e-1c5f-4d0e-9a55-8f1e0c3b7d21@mx.test.example>\r\n"
	addedDate      = "Date: Sat, 01 Mar 2025 12:00:00 +0000\r\n"
	stampID        = "<0b6d2a3e-1c5f-4d0e-9a55-8f1e0c3b7d21@mx.test.example>"
)

func TestIntake(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		// want is what intake should learn; stored is compared exactly.
		stored       string
		from         string
		subject      string
		to, cc, bcc  []message.Address
		tag          string
		metadata     map[string]string
		stream       string // "" means DefaultStream
		messageIDHdr string // "" means the stamp's
		keptClientID bool
	}{
		{
			name: "Postmark headers",
			raw: "From: \"App\" <app@example.com>\r\n" +
				"To: Alice <alice@example.net>, bob@example.org\r\n" +
				"X-PM-Tag: welcome\r\n" +
				"X-PM-Metadata-Client-ID: 42\r\n" +
				"x-pm-metadata-order_number:  A-1 \r\n" +
				"X-PM-Message-Stream: broadcast\r\n" +
				"X-PM-TrackOpens: true\r\n" +
				"x-pm-trackLinks: HtmlAndText\r\n" +
				"Subject: Hello\r\n" +
				"Date: Fri, 28 Feb 2025 10:00:00 +0100\r\n" +
				"\r\n" +
				"Hello Alice.\r\n",
			stored: addedReceived +
				"From: \"App\" <app@example.com>\r\n" +
				"To: Alice <alice@example.net>, bob@example.org\r\n" +
				"Subject: Hello\r\n" +
				"Date: Fri, 28 Feb 2025 10:00:00 +0100\r\n" +
				addedMessageID +
				"\r\n" +
				"Hello Alice.\r\n",
			from:     `"App" <app@example.com>`,
			subject:  "Hello",
			to:       []message.Address{{Email: "alice@example.net", Name: "Alice"}, {Email: "bob@example.org", Name: ""}},
			tag:      "welcome",
			metadata: map[string]string{"Client-ID": "42", "order_number": "A-1"},
			stream:   "broadcast",
		},
		{
			name:     "metadata without a key, empty stream",
			raw:      "X-PM-Metadata-: lost\r\nX-PM-Message-Stream:\r\nX-PM-Tag:\r\nDate: x\r\n\r\n",
			stored:   addedReceived + "Date: x\r\n" + addedMessageID + "\r\n",
			metadata: nil,
		},
		{
			name:     "repeated metadata key: the last wins",
			raw:      "X-PM-Metadata-k: 1\r\nX-PM-Metadata-k: 2\r\nDate: x\r\n\r\n",
			stored:   addedReceived + "Date: x\r\n" + addedMessageID + "\r\n",
			metadata: map[string]string{"k": "2"},
		},
		{
			name: "KeepID true keeps the client's Message-ID",
			raw: "X-PM-KeepID: true\r\n" +
				"Message-ID: <client-chosen@example.com>\r\n" +
				"Date: x\r\n\r\nbody",
			stored:       addedReceived + "Message-ID: <client-chosen@example.com>\r\nDate: x\r\n\r\nbody",
			messageIDHdr: "<client-chosen@example.com>",
			keptClientID: true,
		},
		{
			name: "KeepID is case-insensitive, as is the field name",
			raw: "Date: x\r\n" +
				"message-id:\r\n <folded@example.com>\r\n" +
				"x-pm-keepid: TRUE\r\n\r\n",
			stored:       addedReceived + "Date: x\r\nmessage-id:\r\n <folded@example.com>\r\n" + "\r\n",
			messageIDHdr: "<folded@example.com>",
			keptClientID: true,
		},
		{
			name: "KeepID true keeps the first Message-ID only",
			raw: "Message-ID: <one@example.com>\r\n" +
				"Message-ID: <two@example.com>\r\n" +
				"X-PM-KeepID: true\r\nDate: x\r\n\r\n",
			stored:       addedReceived + "Message-ID: <one@example.com>\r\nDate: x\r\n\r\n",
			messageIDHdr: "<one@example.com>",
			keptClientID: true,
		},
		{
			name: "KeepID true with an empty Message-ID gives the stamp's",
			raw: "X-PM-KeepID: true\r\n" +
				"Message-ID:\r\n" +
				"message-id: \r\n \r\n" +
				"Date: x\r\n\r\nbody",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name: "KeepID true keeps the first non-empty Message-ID",
			raw: "X-PM-KeepID: true\r\n" +
				"Message-ID:\r\n" +
				"Message-ID: <second@example.com>\r\n" +
				"Date: x\r\n\r\nbody",
			stored:       addedReceived + "Message-ID: <second@example.com>\r\nDate: x\r\n\r\nbody",
			messageIDHdr: "<second@example.com>",
			keptClientID: true,
		},
		{
			name:   "KeepID false replaces the Message-ID",
			raw:    "X-PM-KeepID: false\r\nMessage-ID: <client-chosen@example.com>\r\nDate: x\r\n\r\nbody",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name:   "KeepID other than true replaces the Message-ID",
			raw:    "X-PM-KeepID: yes\r\nMessage-ID: <client-chosen@example.com>\r\nDate: x\r\n\r\nbody",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name:   "no KeepID replaces every Message-ID",
			raw:    "Message-ID: <a@example.com>\r\nMESSAGE-ID: <b@example.com>\r\nDate: x\r\n\r\nbody",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name:   "KeepID true without a Message-ID",
			raw:    "X-PM-KeepID: true\r\nDate: x\r\n\r\nbody",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name: "Bcc removed: plain, folded, lower and upper case",
			raw: "From: app@example.com\r\n" +
				"Bcc: one@example.net\r\n" +
				"To: to@example.net\r\n" +
				"Bcc: Two <two@example.net>,\r\n" +
				"\tthree@example.net,\r\n" +
				"  four@example.net\r\n" +
				"bcc: five@example.net\r\n" +
				"BCC: six@example.net\n" +
				"Date: x\r\n" +
				"\r\n" +
				"Bcc: in the body stays\r\n",
			stored: addedReceived +
				"From: app@example.com\r\n" +
				"To: to@example.net\r\n" +
				"Date: x\r\n" +
				addedMessageID +
				"\r\n" +
				"Bcc: in the body stays\r\n",
			from: "app@example.com",
			to:   []message.Address{{Email: "to@example.net", Name: ""}},
			bcc: []message.Address{{Email: "one@example.net", Name: ""}, {Email: "two@example.net", Name: "Two"}, {Email: "three@example.net", Name: ""},
				{Email: "four@example.net", Name: ""}, {Email: "five@example.net", Name: ""}, {Email: "six@example.net", Name: ""}},
		},
		{
			name: "folded headers kept byte for byte",
			raw: "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel;\r\n" +
				"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
				"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n" +
				"Subject: a subject that goes\r\n" +
				"   on and on   \r\n" +
				"To: x@example.net,\n" +
				" y@example.net\n" +
				"Cc:   c@example.net  \r\n" +
				"Date: x\r\n" +
				"\r\n" +
				"body",
			stored: addedReceived +
				"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=sel;\r\n" +
				"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
				"\tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n" +
				"Subject: a subject that goes\r\n" +
				"   on and on   \r\n" +
				"To: x@example.net,\n" +
				" y@example.net\n" +
				"Cc:   c@example.net  \r\n" +
				"Date: x\r\n" +
				addedMessageID +
				"\r\n" +
				"body",
			subject: "a subject that goes   on and on",
			to:      []message.Address{{Email: "x@example.net", Name: ""}, {Email: "y@example.net", Name: ""}},
			cc:      []message.Address{{Email: "c@example.net", Name: ""}},
		},
		{
			name:    "Date added when missing",
			raw:     "Subject: hi\r\n\r\nbody\r\n",
			stored:  addedReceived + "Subject: hi\r\n" + addedMessageID + addedDate + "\r\nbody\r\n",
			subject: "hi",
		},
		{
			name:    "Date kept, in any case, even empty",
			raw:     "dATE:\r\nSubject: hi\r\n\r\nbody\r\n",
			stored:  addedReceived + "dATE:\r\nSubject: hi\r\n" + addedMessageID + "\r\nbody\r\n",
			subject: "hi",
		},
		{
			name:   "Received on top of the client's",
			raw:    "Received: from laptop by app.example; Fri, 28 Feb 2025 09:00:00 +0000\r\nDate: x\r\n\r\nbody",
			stored: addedReceived + "Received: from laptop by app.example; Fri, 28 Feb 2025 09:00:00 +0000\r\nDate: x\r\n" + addedMessageID + "\r\nbody",
		},
		{
			name: "encoded words decoded",
			raw: "From: =?UTF-8?Q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>\r\n" +
				"To: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.net>\r\n" +
				"Subject: =?UTF-8?B?w4l0w6kgw6AgUGFyaXM=?=\r\n" +
				"X-PM-Tag: =?utf-8?q?r=C3=A9sum=C3=A9?=\r\n" +
				"X-PM-Metadata-City: =?UTF-8?B?S8O2bG4=?=\r\n" +
				"Date: x\r\n\r\n",
			stored: addedReceived +
				"From: =?UTF-8?Q?Jos=C3=A9_Garc=C3=ADa?= <jose@example.com>\r\n" +
				"To: =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.net>\r\n" +
				"Subject: =?UTF-8?B?w4l0w6kgw6AgUGFyaXM=?=\r\n" +
				"Date: x\r\n" +
				addedMessageID + "\r\n",
			from:     "José García <jose@example.com>",
			to:       []message.Address{{Email: "elodie@example.net", Name: "Élodíe"}},
			subject:  "Été à Paris",
			tag:      "résumé",
			metadata: map[string]string{"City": "Köln"},
		},
		{
			name:    "unknown charset passed through, malformed word kept as written",
			raw:     "Subject: =?x-unknown?Q?abc?= and =?UTF-8?B?bad base64?=\r\nDate: x\r\n\r\n",
			stored:  addedReceived + "Subject: =?x-unknown?Q?abc?= and =?UTF-8?B?bad base64?=\r\nDate: x\r\n" + addedMessageID + "\r\n",
			subject: "abc and =?UTF-8?B?bad base64?=",
		},
		{
			name:    "first From and Subject count",
			raw:     "From: a@example.com\r\nFrom: b@example.com\r\nSubject: one\r\nSubject: two\r\nDate: x\r\n\r\n",
			stored:  addedReceived + "From: a@example.com\r\nFrom: b@example.com\r\nSubject: one\r\nSubject: two\r\nDate: x\r\n" + addedMessageID + "\r\n",
			from:    "a@example.com",
			subject: "one",
		},
		{
			name:   "unparsable address list kept as written",
			raw:    "To: not an address, <broken@\r\nDate: x\r\n\r\n",
			stored: addedReceived + "To: not an address, <broken@\r\nDate: x\r\n" + addedMessageID + "\r\n",
			to:     []message.Address{{Email: "not an address", Name: ""}, {Email: "<broken@", Name: ""}},
		},
		{
			name: "bare LF message",
			raw:  "From: a@example.com\nX-PM-Tag: lf\nBcc: b@example.net\nSubject: hi\n\nline one\nline two\n",
			// The header section is kept as written; the body gets
			// CRLF line endings.
			stored: addedReceived + "From: a@example.com\nSubject: hi\n" + addedMessageID + addedDate +
				"\r\nline one\r\nline two\r\n",
			from:    "a@example.com",
			subject: "hi",
			tag:     "lf",
			bcc:     []message.Address{{Email: "b@example.net", Name: ""}},
		},
		{
			name:    "no blank line separator",
			raw:     "From: a@example.com\r\nSubject: hi\r\nHello, this is the body.\r\n",
			stored:  addedReceived + "From: a@example.com\r\nSubject: hi\r\n" + addedMessageID + addedDate + "\r\nHello, this is the body.\r\n",
			from:    "a@example.com",
			subject: "hi",
		},
		{
			name:    "only headers, no final newline",
			raw:     "From: a@example.com\r\nX-PM-Tag: t\r\nSubject: hi",
			stored:  addedReceived + "From: a@example.com\r\nSubject: hi\r\n" + addedMessageID + addedDate + "\r\n",
			from:    "a@example.com",
			subject: "hi",
			tag:     "t",
		},
		{
			name:    "only headers, removed field last without newline",
			raw:     "Subject: hi\r\nBcc: b@example.net",
			stored:  addedReceived + "Subject: hi\r\n" + addedMessageID + addedDate + "\r\n",
			subject: "hi",
			bcc:     []message.Address{{Email: "b@example.net", Name: ""}},
		},
		{
			name: "non-header line ends the header section",
			raw:  "From: a@example.com\r\nnot a header\r\nX-PM-Tag: late\r\nBcc: late@example.net\r\n\r\nbody\r\n",
			// What follows the bad line is body, kept as written.
			stored: addedReceived + "From: a@example.com\r\n" + addedMessageID + addedDate +
				"\r\nnot a header\r\nX-PM-Tag: late\r\nBcc: late@example.net\r\n\r\nbody\r\n",
			from: "a@example.com",
		},
		{
			name:   "empty message",
			raw:    "",
			stored: addedReceived + addedMessageID + addedDate + "\r\n",
		},
		{
			name:   "only a line ending",
			raw:    "\r\n",
			stored: addedReceived + addedMessageID + addedDate + "\r\n",
		},
		{
			name:   "body only",
			raw:    "\r\nX-PM-Tag: in the body\r\n",
			stored: addedReceived + addedMessageID + addedDate + "\r\nX-PM-Tag: in the body\r\n",
		},
		{
			name:   "tag of exactly 1000 characters",
			raw:    "X-PM-Tag: " + strings.Repeat("é", maxTagLength) + "\r\nDate: x\r\n\r\n",
			stored: addedReceived + "Date: x\r\n" + addedMessageID + "\r\n",
			tag:    strings.Repeat("é", maxTagLength),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := intake([]byte(tc.raw), intakeStamp)
			if err != nil {
				t.Fatalf("intake: %v", err)
			}
			if string(r.stored) != tc.stored {
				t.Errorf("stored:\n got %q\nwant %q", r.stored, tc.stored)
			}
			if r.from != tc.from {
				t.Errorf("from = %q, want %q", r.from, tc.from)
			}
			if r.subject != tc.subject {
				t.Errorf("subject = %q, want %q", r.subject, tc.subject)
			}
			for _, l := range []struct {
				name      string
				got, want []message.Address
			}{{"to", r.to, tc.to}, {"cc", r.cc, tc.cc}, {"bcc", r.bcc, tc.bcc}} {
				if !slices.Equal(l.got, l.want) {
					t.Errorf("%s = %q, want %q", l.name, l.got, l.want)
				}
			}
			if r.tag != tc.tag {
				t.Errorf("tag = %q, want %q", r.tag, tc.tag)
			}
			if !maps.Equal(r.metadata, tc.metadata) {
				t.Errorf("metadata = %q, want %q", r.metadata, tc.metadata)
			}
			wantStream := tc.stream
			if wantStream == "" {
				wantStream = DefaultStream
			}
			if r.stream != wantStream {
				t.Errorf("stream = %q, want %q", r.stream, wantStream)
			}
			wantID := tc.messageIDHdr
			if wantID == "" {
				wantID = stampID
			}
			if r.messageIDHdr != wantID || r.keptClientID != tc.keptClientID {
				t.Errorf("Message-ID = %q (client's kept: %v), want %q (%v)", r.messageIDHdr, r.keptClientID, wantID, tc.keptClientID)
			}
			// Whatever the message, the stored form has the properties
			// the fuzz test checks.
			checkStoredForm(t, []byte(tc.raw), r.stored, intakeStamp)
		})
	}
}

func TestIntakeTagTooLong(t *testing.T) {
	for name, raw := range map[string]string{
		"ASCII":               "X-PM-Tag: " + strings.Repeat("a", maxTagLength+1) + "\r\n\r\nbody",
		"multibyte":           "Subject: hi\r\nX-PM-Tag: " + strings.Repeat("é", maxTagLength+1) + "\r\n\r\nbody",
		"folded":              "X-PM-Tag: " + strings.Repeat("a", 600) + "\r\n " + strings.Repeat("b", 401) + "\r\n\r\n",
		"encoded word":        "X-PM-Tag: =?UTF-8?B?" + strings.Repeat("YWFh", 334) + "?=\r\n\r\n", // 1002 a's
		"lower case, no body": "x-pm-tag: " + strings.Repeat("z", 5000),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := intake([]byte(raw), intakeStamp)
			if !errors.Is(err, errTagTooLong) {
				t.Fatalf("intake = %v, %v; want errTagTooLong", r, err)
			}
			if r != nil {
				t.Errorf("a refused message has a result: %+v", r)
			}
		})
	}
	if !strings.Contains(errTagTooLong.Error(), "1000") {
		t.Errorf("errTagTooLong %q does not name the limit", errTagTooLong)
	}
}

// The result does not alias the input: the session's buffer may be reused.
func TestIntakeDoesNotAliasInput(t *testing.T) {
	raw := []byte("Subject: hi\r\nDate: x\r\n\r\nbody")
	r, err := intake(raw, intakeStamp)
	if err != nil {
		t.Fatal(err)
	}
	want := string(r.stored)
	for i := range raw {
		raw[i] = 'X'
	}
	if string(r.stored) != want {
		t.Errorf("stored changed with the input: %q", r.stored)
	}
}

// checkStoredForm checks what must hold of every stored message, whatever
// the client sent: it starts with the stamp's Received field; its header
// section (up to the first empty line) has no X-PM-* or Bcc field and
// exactly one Message-ID; after the header section comes the message's
// body with every line ending made a CRLF (byte for byte when it had only
// CRLFs), so it holds no bare CR and no bare LF.
func checkStoredForm(t testing.TB, raw, stored []byte, st stamp) {
	t.Helper()
	if !strings.HasPrefix(string(stored), st.received+"\r\n") {
		t.Fatalf("stored message does not start with the Received field:\n%q", stored)
	}
	header, body, ok := splitHeader(stored)
	if !ok {
		t.Fatalf("stored message has no empty line ending its header section:\n%q", stored)
	}
	messageIDs := 0
	for _, line := range header {
		lower := strings.ToLower(line)
		switch {
		case strings.HasPrefix(lower, "x-pm-"):
			t.Errorf("X-PM- field in the stored header: %q", line)
		case strings.HasPrefix(lower, "bcc:"):
			t.Errorf("Bcc field in the stored header: %q", line)
		case strings.HasPrefix(lower, "message-id:"):
			messageIDs++
		}
	}
	if messageIDs != 1 {
		t.Errorf("%d Message-ID fields in the stored header, want 1:\n%q", messageIDs, stored)
	}
	// The body is the part of raw that parseMessage left after the
	// header section: a suffix of raw, stored with CRLF line endings.
	rawBody := message.Split(raw).Body
	if !strings.HasSuffix(string(raw), string(rawBody)) {
		t.Errorf("parsed body %q is not a suffix of the message", rawBody)
	}
	if want := crlfReference(string(rawBody)); body != want {
		t.Errorf("stored body %q, want the message's body with CRLF line endings %q", body, want)
	}
	if i := bareLineEndAt(body); i >= 0 {
		t.Errorf("stored body has a bare CR or LF at %d: %q", i, body)
	}
}

// crlfReference is what the stored body should be, written apart from
// intake's scan: every CRLF, bare CR and bare LF is one line end, a CRLF.
func crlfReference(body string) string {
	s := strings.ReplaceAll(body, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// bareLineEndAt returns the index of the first CR not followed by LF or
// LF not preceded by CR in s, or -1, byte by byte.
func bareLineEndAt(s string) int {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n'):
			return i
		case s[i] == '\n' && (i == 0 || s[i-1] != '\r'):
			return i
		}
	}
	return -1
}

// splitHeader splits a stored message at its first empty line (CRLF or
// LF), independently of message.Split: the header lines, without their line
// endings, and everything after the empty line.
func splitHeader(msg []byte) (header []string, body string, ok bool) {
	s := string(msg)
	for len(s) > 0 {
		line, rest, found := strings.Cut(s, "\n")
		content := strings.TrimRight(line, "\r")
		if content == "" && found {
			return header, rest, true
		}
		header = append(header, content)
		s = rest
	}
	return header, "", false
}

// A bare CR in the header section could split a field in two downstream
// (smuggling a Bcc past intake); it is refused. In the body it is a line
// end, stored as CRLF (TestIntakeBodyLineEnds).
func TestIntakeBareCR(t *testing.T) {
	for _, raw := range []string{
		"Subject: one\rBcc: x@example.net\r\n\r\nbody\r\n",
		"Subject: one\r\n\tfolded\rX-PM-Tag: t\r\n\r\nbody\r\n",
		"Subject: ends in CR\r",
	} {
		if _, err := intake([]byte(raw), intakeStamp); !errors.Is(err, errBareCR) {
			t.Errorf("intake(%q) = %v, want errBareCR", raw, err)
		}
	}
	r, err := intake([]byte("Subject: ok\r\n\r\nbody with \r a bare CR\r\n"), intakeStamp)
	if err != nil || !strings.HasSuffix(string(r.stored), "\r\n\r\nbody with \r\n a bare CR\r\n") {
		t.Fatalf("bare CR in the body: %v, %q", err, r.stored)
	}
}

// SMTP smuggling downstream: a body line end other than CRLF is one to
// some servers and none to others, and the relay's client dot-stuffs only
// the lines it sees start. The stored body has CRLF line endings only: a
// bare LF becomes CRLF, as Postfix 3.9's smtpd_forbid_bare_newline =
// normalize does, and so does a bare CR. A body with only CRLFs is stored
// byte for byte.
func TestIntakeBodyLineEnds(t *testing.T) {
	const fields = "Subject: s\r\nDate: x\r\n"
	for _, tc := range []struct {
		name   string
		header string // as sent; "" means fields, then a blank line
		fields string // as stored; "" means fields
		body   string
		want   string // the stored body
	}{
		{name: "bare LF", body: "one\ntwo\n", want: "one\r\ntwo\r\n"},
		{name: "bare CR", body: "one\rtwo\r", want: "one\r\ntwo\r\n"},
		{name: "CR CR LF is two line ends", body: "one\r\r\ntwo\r\n", want: "one\r\n\r\ntwo\r\n"},
		{name: "LF CR is two line ends", body: "one\n\rtwo", want: "one\r\n\r\ntwo"},
		{name: "LF.LF", body: "hello\n.\nsmuggled\r\n", want: "hello\r\n.\r\nsmuggled\r\n"},
		{name: "CR.CRLF", body: "hello\r.\r\nsmuggled\r\n", want: "hello\r\n.\r\nsmuggled\r\n"},
		{name: "CR.CR", body: "hello\r.\rsmuggled", want: "hello\r\n.\r\nsmuggled"},
		{name: "LF.CRLF", body: "hello\n.\r\nsmuggled", want: "hello\r\n.\r\nsmuggled"},
		{
			name: "mixed",
			body: "crlf\r\nlf\ncr\rcrcrlf\r\r\nlflf\n\n.dot\r\nend",
			want: "crlf\r\nlf\r\ncr\r\ncrcrlf\r\n\r\nlflf\r\n\r\n.dot\r\nend",
		},
		{name: "first byte a bare LF", body: "\nfirst", want: "\r\nfirst"},
		{name: "first byte a bare CR", body: "\rfirst", want: "\r\nfirst"},
		{name: "last byte a bare CR", body: "a\r\nb\r\nlast\r", want: "a\r\nb\r\nlast\r\n"},
		{name: "bare LF after clean lines", body: "a\r\nb\r\nc\n", want: "a\r\nb\r\nc\r\n"},
		{
			name: "already CRLF",
			body: "one\r\n\r\n.two\r\n..three\r\nno final line end",
			want: "one\r\n\r\n.two\r\n..three\r\nno final line end",
		},
		{name: "empty", body: "", want: ""},
		{
			name:   "body after a non-header line",
			header: fields,
			body:   "not a header\n.\nsmuggled",
			want:   "not a header\r\n.\r\nsmuggled",
		},
		{
			name:   "header kept as written",
			header: "Subject: s\nDate: x\n\n",
			fields: "Subject: s\nDate: x\n",
			body:   "one\ntwo",
			want:   "one\r\ntwo",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, f := tc.header, tc.fields
			if h == "" {
				h = fields + "\r\n"
			}
			if f == "" {
				f = fields
			}
			r, err := intake([]byte(h+tc.body), intakeStamp)
			if err != nil {
				t.Fatal(err)
			}
			want := addedReceived + f + addedMessageID + "\r\n" + tc.want
			if string(r.stored) != want {
				t.Errorf("stored:\n got %q\nwant %q", r.stored, want)
			}
			checkStoredForm(t, []byte(h+tc.body), r.stored, intakeStamp)
		})
	}
}

// cleanMessage2K is the common case: a 2 KB message with CRLF line
// endings throughout, as BenchmarkAccept sends.
var cleanMessage2K = []byte("From: app@example.com\r\nTo: alice@example.net\r\nSubject: bench\r\n\r\n" +
	strings.Repeat(strings.Repeat("x", 76)+"\r\n", 2048/78))

// The common case costs nothing more: a clean 2 KB body is scanned once
// and copied into the stored message as it is, with no allocation of its
// own. A body that needs fixing costs no more allocations either: the
// stored message is sized for it from the start.
func TestIntakeBodyLineEndsAllocations(t *testing.T) {
	_, body, _ := bytes.Cut(cleanMessage2K, []byte("\r\n\r\n"))
	if at, growth := bareLineEnds(body); at != -1 || growth != 0 {
		t.Fatalf("bareLineEnds of a clean body = %d, %d; want -1, 0", at, growth)
	}
	var out bytes.Buffer
	out.Grow(len(body))
	if n := testing.AllocsPerRun(100, func() {
		out.Reset()
		at, _ := bareLineEnds(body)
		writeCRLF(&out, body, at)
	}); n != 0 {
		t.Errorf("scanning and writing a clean body: %v allocations, want 0", n)
	}
	if !bytes.Equal(out.Bytes(), body) {
		t.Errorf("a clean body was changed")
	}

	header := slices.Clone(cleanMessage2K[:len(cleanMessage2K)-len(body)])
	// Worst case: every other byte a bare LF, so the stored body is half
	// as long again as the one sent.
	bare := slices.Concat(header, bytes.Repeat([]byte("x\n"), 1024))
	allocs := func(raw []byte) float64 {
		return testing.AllocsPerRun(100, func() {
			if _, err := intake(raw, intakeStamp); err != nil {
				t.Fatal(err)
			}
		})
	}
	clean, empty, fixed := allocs(cleanMessage2K), allocs(header), allocs(bare)
	t.Logf("intake allocations: clean 2 KB message %v, same header without a body %v, 2 KB body of 1024 bare LFs %v", clean, empty, fixed)
	if clean != empty || fixed != empty {
		t.Errorf("the body costs allocations: %v with a clean 2 KB body, %v with bare LFs, %v without a body", clean, fixed, empty)
	}
	r, err := intake(cleanMessage2K, intakeStamp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(r.stored, body) {
		t.Errorf("a clean body is not stored byte for byte")
	}
}

// The size limit counts what the client sent: a message under it is
// accepted even when its bare LFs, made CRLFs, take the stored message
// over it.
func TestIntakeSizeLimitCountsClientBytes(t *testing.T) {
	const limit = 64 << 10
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.MaxMessageBytes = limit }})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	c.expect("354", "DATA")
	lines := strings.Repeat("x\n", 30<<10)
	msg := "From: app@example.com\r\nSubject: bare LFs\r\n\r\n" + lines + "\r\n"
	if len(msg) >= limit-16 {
		t.Fatalf("the message is %d bytes, not under the limit", len(msg))
	}
	c.write(msg + ".\r\n")
	id := queuedID(t, c.readReply())
	raws := storedRaw(t, ts)
	if len(raws) != 1 {
		t.Fatalf("%d messages stored, want 1", len(raws))
	}
	_, body, _ := bytes.Cut(raws[0], []byte("\r\n\r\n"))
	if want := strings.ReplaceAll(lines, "\n", "\r\n") + "\r\n"; string(body) != want {
		t.Errorf("stored body %.40q…, want the lines with CRLF endings", body)
	}
	if len(raws[0]) <= limit {
		t.Errorf("stored %d bytes: the test meant to go over the %d-byte limit once normalized", len(raws[0]), limit)
	}
	if m, err := ts.Store.Message(ts.Inst.ServerID, id); err != nil || m.Size != len(raws[0]) {
		t.Errorf("stored Size %d (%v), want the stored message's %d bytes", m.Size, err, len(raws[0]))
	}
}

// BenchmarkIntake measures intake alone on a 2 KB message: clean, as
// nearly every client sends, and with bare LF line endings.
//
//	go test -run '^$' -bench BenchmarkIntake -benchmem ./smtpd/
func BenchmarkIntake(b *testing.B) {
	_, body, _ := bytes.Cut(cleanMessage2K, []byte("\r\n\r\n"))
	header := cleanMessage2K[:len(cleanMessage2K)-len(body)]
	for _, bc := range []struct {
		name string
		raw  []byte
	}{
		{"clean", cleanMessage2K},
		{"bare-LF", slices.Concat(header, bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := intake(bc.raw, intakeStamp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBareLineEnds measures the scan of a clean 2 KB body, the cost
// the common case pays for normalization.
func BenchmarkBareLineEnds(b *testing.B) {
	_, body, _ := bytes.Cut(cleanMessage2K, []byte("\r\n\r\n"))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if at, _ := bareLineEnds(body); at >= 0 {
			b.Fatal("not clean")
		}
	}
}
