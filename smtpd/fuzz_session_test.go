package smtpd

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/domainname"
)

// sessionSeeds are whole client dialogues for FuzzSMTPSession. "$PLAIN"
// stands for the AUTH PLAIN initial response of the server's token,
// "$B64TOKEN" for the token in base64 (AUTH LOGIN), so that the fuzzer
// can reach the states after AUTH.
var sessionSeeds = []struct{ name, dialogue string }{
	{"send-one", "EHLO client.test\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n" +
		"From: app@example.com\r\nTo: alice@example.net\r\nSubject: hi\r\nX-PM-Tag: t\r\n\r\nbody\r\n.\r\nQUIT\r\n"},
	{"no-auth", "EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\nFrom: a@example.com\r\n\r\nx\r\n.\r\nQUIT\r\n"},
	{"helo-no-ehlo", "HELO x\r\nMAIL FROM:<a@example.com>\r\nDATA\r\n.\r\nQUIT\r\n"},
	{"before-ehlo", "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nAUTH PLAIN $PLAIN\r\nQUIT\r\n"},
	{"auth-login", "EHLO c\r\nAUTH LOGIN\r\n$B64TOKEN\r\n$B64TOKEN\r\nMAIL FROM:<>\r\nRCPT TO:<x@example.net>\r\nRSET\r\nNOOP\r\nQUIT\r\n"},
	{"auth-garbage", "EHLO c\r\nAUTH PLAIN !!!not-base64\r\nAUTH PLAIN\r\n*\r\nAUTH CRAM-MD5\r\nAUTH LOGIN Zm9v\r\nYmFy\r\nMAIL FROM:<a@example.com>\r\n"},
	{"bdat-unauth", "EHLO c\r\nMAIL FROM:<a@example.com>\r\nBDAT 5 LAST\r\nhello"},
	{"bdat-auth", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nBDAT 24\r\nFrom: a@example.com\r\n\r\nBDAT 6 LAST\r\nbody\r\nQUIT\r\n"},
	{"smuggling", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" +
		"From: a@example.com\r\n\r\nx\n.\nMAIL FROM:<evil@example.org>\r\n\r.\rRCPT TO:<v@example.net>\r\n.\r\nQUIT\r\n"},
	{"pipelined", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n\r\n.\r\nQUIT\r\n"},
	{"bad-addresses", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@@example.com>\r\nMAIL FROM:<\"a b\"@example.com>\r\nRCPT TO:<@example.net>\r\nRCPT TO:<b@[300.1.1.1]>\r\nRCPT TO:<b@[IPv6:::1]>\r\nRCPT TO:<b@-x.example>\r\nQUIT\r\n"},
	{"mail-params", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@example.com> SIZE=999999999999 BODY=8BITMIME SMTPUTF8\r\nMAIL FROM:<a@example.com> SIZE=-1\r\nMAIL FROM:<a@example.com> FOO=BAR\r\nQUIT\r\n"},
	{"nul-and-bare-lf", "EHLO c\x00d\nAUTH PLAIN $PLAIN\nMAIL FROM:<a@example.com>\x00\r\nRCPT TO:<b@example.net>\rDATA\r\n"},
	{"long-line", "EHLO " + strings.Repeat("x", 5000) + "\r\nNOOP\r\nQUIT\r\n"},
	{"starttls-plain", "EHLO c\r\nSTARTTLS\r\nnot a tls hello\r\n"},
	{"double-auth", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nAUTH PLAIN $PLAIN\r\nEHLO again\r\nMAIL FROM:<a@example.com>\r\nQUIT\r\n"},
	{"unknown-stream", "EHLO c\r\nAUTH PLAIN $PLAIN\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nX-PM-Message-Stream: nope\r\n\r\nx\r\n.\r\nQUIT\r\n"},
	{"empty", ""},
	{"quit-only", "QUIT\r\n"},
}

// replyLine is what every line the server writes must look like.
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9]([ -]|$)`)

var queuedAs = regexp.MustCompile(`^250 2\.0\.0 OK: queued as (\S+)$`)

// sessionBound is how long one dialogue may take before the test calls
// it hung.
const sessionBound = 10 * time.Second

// FuzzSMTPSession feeds a real listener whole dialogues. Whatever the
// client sends, the server does not crash, writes only well-formed reply
// lines, ends the session within a bound once the client stops sending,
// and answers "queued" only for messages it has stored, and only after a
// successful AUTH. One listener serves every input of a fuzz worker.
func FuzzSMTPSession(f *testing.F) {
	for _, s := range sessionSeeds {
		f.Add([]byte(s.dialogue))
	}
	ts := newTestServer(f, testOptions{noTLS: false, mutate: func(c *Config) {
		// The fuzzer fails AUTH often; shutting loopback out would hide
		// every state after AUTH.
		c.Throttle = nil
		c.CommandTimeout = 2 * time.Second
		c.MaxMessageBytes = 64 << 10
	}})
	tok := ts.Inst.ServerToken
	plain := plainIR(tok, tok)
	b64 := base64.StdEncoding.EncodeToString([]byte(tok))
	f.Fuzz(func(t *testing.T, dialogue []byte) {
		in := bytes.ReplaceAll(dialogue, []byte("$PLAIN"), []byte(plain))
		in = bytes.ReplaceAll(in, []byte("$B64TOKEN"), []byte(b64))
		runDialogue(t, ts, in)
	})
}

func runDialogue(t *testing.T, ts *testServer, in []byte) {
	conn, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	conn.SetDeadline(start.Add(sessionBound))
	go func() {
		conn.Write(in)
		// EOF after the dialogue: the server must then end the session.
		conn.(*net.TCPConn).CloseWrite()
	}()
	r := bufio.NewReader(io.LimitReader(conn, 1<<20))
	authenticated := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if line != "" {
				t.Fatalf("reply line without CRLF: %q", line)
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the session did not end within %v", sessionBound)
			}
			return // EOF or reset: the session ended
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("reply line ends in a bare LF: %q", line)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if !replyLine.MatchString(line) {
			t.Fatalf("malformed reply line %q", line)
		}
		if strings.HasPrefix(line, "235 ") {
			authenticated = true
		}
		if m := queuedAs.FindStringSubmatch(line); m != nil {
			if !authenticated {
				t.Fatalf("%q without a successful AUTH", line)
			}
			if _, err := ts.Store.Message(ts.Inst.ServerID, m[1]); err != nil {
				t.Fatalf("%q, but the store has no such message: %v", line, err)
			}
		} else if strings.HasPrefix(line, "250 2.0.0 OK") {
			t.Fatalf("an OK reply that is not the queued one: %q", line)
		}
	}
}

// FuzzValidAddress: validAddress never panics, and an address it accepts
// has a non-empty local part, exactly one "@" outside a quoted local part,
// and a domain validDomain accepts.
func FuzzValidAddress(f *testing.F) {
	for _, a := range addressSeeds {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, a string) {
		if !validAddress(a) {
			return
		}
		at := strings.LastIndexByte(a, '@')
		local, domain := a[:at], a[at+1:]
		if local == "" || domain == "" {
			t.Fatalf("accepted %q: empty local part or domain", a)
		}
		if unquotedAts(local) != 0 {
			t.Fatalf("accepted %q: an unquoted @ in the local part %q", a, local)
		}
		if !domainname.ValidAddress(domain) {
			t.Fatalf("accepted %q with the invalid domain %q", a, domain)
		}
		if strings.ContainsAny(a, "\r\n\x00") {
			t.Fatalf("accepted %q: a control character", a)
		}
		if len(a) > 320 || len(local) > 66 {
			t.Fatalf("accepted %q: too long", a)
		}
	})
}

// unquotedAts counts the "@" of local outside double quotes.
func unquotedAts(local string) int {
	n, quoted := 0, false
	for i := 0; i < len(local); i++ {
		switch c := local[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '@' && !quoted:
			n++
		}
	}
	return n
}

var addressSeeds = []string{
	"alice@example.net", "a@b", "\"a b\"@example.com", "\"a@b\"@example.com", "a@b@example.com",
	"user+tag@sub.example.co.uk", "josé@exämple.com", "a@[127.0.0.1]", "a@[IPv6:::1]", "a@[300.0.0.1]",
	"a@[", "a@]", "@example.com", "a@", "a@example.com.", "a@.example.com", "a@-x.example", "a@x-.example",
	"a@" + strings.Repeat("l", 64) + ".example", strings.Repeat("l", 65) + "@example.com", "a\x00@example.com",
	"a@exa mple.com", "a b@example.com", "\"\"@example.com", "\"@example.com", "a@example..com", "",
	"a@[IPv6:1::2::3]", "a\r\n@example.com", "\"a\\\"@\"@example.com",
}

// TestWriteSessionSeeds writes the seeds of FuzzSMTPSession and
// FuzzValidAddress into testdata/fuzz:
//
//	POSTERN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteSessionSeeds ./smtpd/
func TestWriteSessionSeeds(t *testing.T) {
	if os.Getenv("POSTERN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set POSTERN_WRITE_FUZZ_SEEDS=1 to rewrite the seed corpora")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzSMTPSession")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range sessionSeeds {
		if err := os.WriteFile(filepath.Join(dir, s.name), seedFile(s.dialogue), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join("testdata", "fuzz", "FuzzValidAddress")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, a := range addressSeeds {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), fmt.Appendf(nil, "go test fuzz v1\nstring(%q)\n", a), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzValidAddress found that validAddress accepted "a@b@example.com":
// an address with two unquoted "@", whose relaying would depend on how
// the next hop splits it. go-smtp unquotes "a@b"@example.com to the same
// string, so both are refused now.
func TestFuzzValidAddressUnquotedAt(t *testing.T) {
	for _, a := range []string{"a@b@example.com", "@@example.com", "a\"@example.com", "\"a\"b\"@example.com", "\"a\\\"@example.com", "\"a@example.com"} {
		if validAddress(a) {
			t.Errorf("validAddress(%q) = true", a)
		}
	}
	for _, a := range []string{"\"a@b\"@example.com", "\"a\\\"b\"@example.com", "\"a b\"@example.com", "a.b+c@example.com"} {
		if !validAddress(a) {
			t.Errorf("validAddress(%q) = false", a)
		}
	}
	ts := newTestServer(t, testOptions{noTLS: true})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("501", "MAIL FROM:<a@b@example.com>")
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("501", "RCPT TO:<\"a@b\"@example.net>")
	c.expect("501", "RCPT TO:<a@b@example.net>")
}

// FuzzValidAddress found that the first fix of the above let a quoted
// pair skip the control-character check: "\<CR>"@0 was accepted.
func TestFuzzValidAddressEscapedControl(t *testing.T) {
	for _, a := range []string{"\"\\\r\"@0", "\"\\\n\"@example.com", "\"a\\\x00\"@example.com"} {
		if validAddress(a) {
			t.Errorf("validAddress(%q) = true", a)
		}
	}
}
