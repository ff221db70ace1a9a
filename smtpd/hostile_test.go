package smtpd

// Hostile and malformed input over a raw socket: each case gets the right
// reply or a timeout, never a crash, and never memory that grows with what
// the client sends.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// storedRaw returns the raw MIME of every message the test server's
// Sandbox server has stored.
func storedRaw(t *testing.T, ts *testServer) [][]byte {
	t.Helper()
	msgs, err := ts.Store.Messages(ts.Inst.ServerID, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, m := range msgs {
		raw, err := ts.Store.RawMessage(ts.Inst.ServerID, m.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

// write sends bytes as they are, with no line ending added.
func (c *rawClient) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("writing %q: %v", s, err)
	}
}

// closedByServer reports whether the server closes the connection within
// d (reading and discarding whatever it still sends).
func (c *rawClient) closedByServer(d time.Duration) bool {
	c.conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.text.R)
	// io.Copy returns nil at EOF; a reset (the server closed with our
	// bytes unread) is a close too. Only the deadline is not.
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// writeAsync sends s without waiting: the server may close the connection
// before it has read it all, which fails the write.
func (c *rawClient) writeAsync(s string) {
	go func() { io.WriteString(c.conn, s) }()
}

func TestHostileCommandsBeforeEHLO(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c, _ := dialRaw(t, ts.Addr)
	c.expect("502 5.5.1", "MAIL FROM:<app@example.com>")
	c.expect("502 5.5.1", "RCPT TO:<a@example.net>")
	c.expect("502 5.5.1", "DATA")
	c.expect("502 5.5.1", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	// Unknown commands and empty lines are syntax errors, not crashes.
	c.expect("50", "XYZZY")
	c.expect("250", "EHLO client.test")
	// MAIL is still refused: no AUTH yet.
	c.expect("530 5.7.0 Authentication required", "MAIL FROM:<app@example.com>")
	c.expect("221", "QUIT")
	if n := len(storedRaw(t, ts)); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A 70,000-byte command line (over streamLineLimit, 64 KiB by default):
// 500 5.4.0 and the connection closes, before or after AUTH, and in the
// middle of a transaction.
func TestHostileLongCommandLine(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	long := strings.Repeat("A", 70000)
	for _, line := range []string{
		"EHLO " + long,
		"MAIL FROM:<" + long + "@example.com>",
		"NOOP " + long,
	} {
		c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
		c.writeAsync(line + "\r\n")
		got := c.readReply()
		if !strings.HasPrefix(got, "500 5.4.0") {
			t.Errorf("%.20s…: %q, want 500 5.4.0", line, got)
		}
		if !c.closedByServer(5 * time.Second) {
			t.Errorf("%.20s…: connection still open", line)
		}
	}
	// A line just under the limit is a command like any other.
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("501", "MAIL FROM:<%s@example.com>", strings.Repeat("a", 3000))
	c.expect("250", "NOOP")
}

// NUL bytes: in addresses they are a syntax error; in the HELO name they
// do not reach the Received field; in the body they are kept as sent.
func TestHostileNULBytes(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)
	c.expect("250", "EHLO evil\x00host")
	c.expect("235", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	c.expect("501", "MAIL FROM:<app\x00@example.com>")
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("501", "RCPT TO:<a\x00b@example.net>")
	c.expect("501", "RCPT TO:<ab@exa\x00mple.net>")
	c.expect("250", "RCPT TO:<ab@example.net>")
	queuedID(t, c.sendData("From: app@example.com\r\nSubject: nul\r\n\r\nbefore\x00after\r\n"))
	raws := storedRaw(t, ts)
	if len(raws) != 1 {
		t.Fatalf("%d messages stored", len(raws))
	}
	if !bytes.Contains(raws[0], []byte("before\x00after")) {
		t.Errorf("the body's NUL was not kept:\n%q", raws[0])
	}
	if i := bytes.Index(raws[0], []byte("\r\n\r\n")); bytes.IndexByte(raws[0][:i], 0) >= 0 {
		t.Errorf("a NUL reached the header:\n%q", raws[0][:i])
	}
}

// SMTP smuggling: only CRLF.CRLF ends DATA. A bare LF or bare CR around
// the dot does not, so what follows stays in the message and is never
// read as commands: one message is stored, holding the smuggled text.
// It is stored with CRLF line endings, so that no server downstream can
// find an end of DATA in it either: the relay dot-stuffs a CRLF.CRLF.
func TestHostileSMTPSmuggling(t *testing.T) {
	for _, tc := range []struct {
		name, end string
		stored    string // how end is stored
	}{
		{"LF.LF", "\n.\n", "\r\n.\r\n"},
		{"CR.CR", "\r.\r", "\r\n.\r\n"},
		{"LF.CRLF", "\n.\r\n", "\r\n.\r\n"},
		// A dot starting a line is dot-stuffing: the intake removes it
		// (RFC 5321 §4.5.2), then the bare LF becomes CRLF.
		{"CRLF.LF", "\r\n.\n", "\r\n\r\n"},
		{"CR.CRLF", "\r.\r\n", "\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, testOptions{})
			c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
			c.expect("250", "MAIL FROM:<app@example.com>")
			c.expect("250", "RCPT TO:<alice@example.net>")
			c.expect("354", "DATA")
			smuggled := "MAIL FROM:<x@y.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
			c.write("From: app@example.com\r\nSubject: outer\r\n\r\nhello" + tc.end + smuggled + ".\r\n")
			got := c.readReply()
			id := queuedID(t, got)
			// Nothing more comes: the smuggled commands were data.
			c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if line, err := c.text.ReadLine(); err == nil {
				t.Fatalf("an extra reply %q: the smuggled text was read as commands", line)
			}
			c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			raws := storedRaw(t, ts)
			if len(raws) != 1 {
				t.Fatalf("%d messages stored, want 1", len(raws))
			}
			if !bytes.Contains(raws[0], []byte("RCPT TO:<victim@example.net>")) || !bytes.Contains(raws[0], []byte("evil")) {
				t.Fatalf("message %s lacks the smuggled text:\n%q", id, raws[0])
			}
			_, body, _ := bytes.Cut(raws[0], []byte("\r\n\r\n"))
			if want := "hello" + tc.stored + smuggled; string(body) != want {
				t.Errorf("stored body %q, want %q", body, want)
			}
			if i := bareLineEndAt(string(raws[0])); i >= 0 {
				t.Errorf("the stored message has a bare CR or LF at %d:\n%q", i, raws[0])
			}
			m, err := ts.Store.Message(ts.Inst.ServerID, id)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Recipients) != 1 || m.Recipients[0] != "alice@example.net" {
				t.Fatalf("recipients %v", m.Recipients)
			}
		})
	}
}

// Commands pipelined in one write, past the limits: 60 RCPTs where 50 are
// allowed, then DATA; each gets its own reply, in order.
func TestHostilePipelinedPastLimits(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	var b strings.Builder
	b.WriteString("MAIL FROM:<app@example.com>\r\n")
	for i := range 60 {
		fmt.Fprintf(&b, "RCPT TO:<r%d@example.net>\r\n", i)
	}
	b.WriteString("DATA\r\n")
	c.write(b.String())
	if r := c.readReply(); !strings.HasPrefix(r, "250") {
		t.Fatalf("MAIL: %q", r)
	}
	for i := range 60 {
		r := c.readReply()
		want := "250"
		if i >= DefaultMaxRecipients {
			want = "452 4.5.3 Too many recipients; at most 50 per message"
		}
		if !strings.HasPrefix(r, want) {
			t.Fatalf("RCPT %d: %q, want %q", i, r, want)
		}
	}
	if r := c.readReply(); !strings.HasPrefix(r, "354") {
		t.Fatalf("DATA: %q", r)
	}
	c.write("From: app@example.com\r\nSubject: p\r\n\r\nhi\r\n.\r\nQUIT\r\n")
	id := queuedID(t, c.readReply())
	if r := c.readReply(); !strings.HasPrefix(r, "221") {
		t.Fatalf("QUIT: %q", r)
	}
	m, err := ts.Store.Message(ts.Inst.ServerID, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Recipients) != DefaultMaxRecipients {
		t.Fatalf("%d recipients stored", len(m.Recipients))
	}
}

// 1,000 RCPTs: the first 50 are taken, the other 950 get 452 each, and
// the session goes on.
func TestHostileThousandRecipients(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	w := bufio.NewWriter(c.conn)
	go func() {
		for i := range 1000 {
			fmt.Fprintf(w, "RCPT TO:<r%d@example.net>\r\n", i)
		}
		w.Flush()
	}()
	refused := 0
	for i := range 1000 {
		r := c.readReply()
		switch {
		case strings.HasPrefix(r, "250") && i < 50:
		case strings.HasPrefix(r, "452 4.5.3") && i >= 50:
			refused++
		default:
			t.Fatalf("RCPT %d: %q", i, r)
		}
	}
	if refused != 950 {
		t.Fatalf("%d refused", refused)
	}
	queuedID(t, c.sendData("From: app@example.com\r\nSubject: many\r\n\r\nhi\r\n"))
}

// AUTH with garbage: bad base64 (initial response and continuation), a
// PLAIN response without NULs, and a cancelled exchange. None
// authenticates; the session goes on.
func TestHostileAuthGarbage(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)
	c.expect("454 4.7.0 Invalid base64 data", "AUTH PLAIN !!!not*base64$$$")
	c.expect("454 4.7.0 Invalid base64 data", "AUTH PLAIN \x00\xff\xfe")
	c.expect("334", "AUTH PLAIN")
	c.expect("454 4.7.0 Invalid base64 data", "%%%%")
	c.expect("334", "AUTH LOGIN")
	c.expect("501 5.0.0", "*")
	// Valid base64 that is not a PLAIN response.
	got := c.cmd("AUTH PLAIN %s", base64Std("no nul bytes at all"))
	if !strings.HasPrefix(got, "4") && !strings.HasPrefix(got, "5") {
		t.Fatalf("PLAIN without NULs: %q", got)
	}
	c.expect("530 5.7.0", "MAIL FROM:<app@example.com>")
	c.expect("235", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
}

// A huge AUTH initial response (far over the line limit) is refused as a
// too-long line and the connection closed; one just under the limit is
// decoded and refused as wrong credentials.
func TestHostileHugeAuthResponse(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)
	huge := base64Std(strings.Repeat("\x00x", 1<<20))
	c.writeAsync("AUTH PLAIN " + huge + "\r\n")
	if got := c.readReply(); !strings.HasPrefix(got, "500 5.4.0") {
		t.Fatalf("huge AUTH: %.100q", got)
	}
	if !c.closedByServer(5 * time.Second) {
		t.Fatal("connection still open")
	}
	c = greeted(t, ts.Addr)
	big := plainIR(strings.Repeat("u", 1400), strings.Repeat("p", 1400))
	c.expect("535 5.7.8", "AUTH PLAIN %s", big)
	// Also as a continuation line.
	c = greeted(t, ts.Addr)
	c.expect("334", "AUTH PLAIN")
	c.writeAsync(huge + "\r\n")
	// go-smtp's AUTH loop gives up on a read error without a reply:
	// the next line read is the too-long rest, so 500 5.4.0, or a close.
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := c.text.ReadLine(); err == nil && !strings.HasPrefix(line, "500 5.4.0") {
		t.Fatalf("huge AUTH continuation: %.100q", line)
	}
	if !c.closedByServer(5 * time.Second) {
		t.Fatal("connection still open after a huge AUTH continuation")
	}
}

// Slowloris: a client sending one byte per second never completes a
// command within command-timeout: 421 4.4.2 and the connection closes,
// for a command line and for DATA alike.
func TestHostileSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	const timeout = 2 * time.Second
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.CommandTimeout = timeout }})
	drip := func(c *rawClient, s string) (closedAfter time.Duration) {
		start := time.Now()
		for i := 0; i < len(s); i++ {
			if _, err := c.conn.Write([]byte{s[i]}); err != nil {
				return time.Since(start)
			}
			time.Sleep(time.Second)
			if time.Since(start) > 4*timeout {
				break
			}
		}
		return time.Since(start)
	}
	t.Run("command", func(t *testing.T) {
		t.Parallel()
		c, _ := dialRaw(t, ts.Addr)
		done := make(chan string, 1)
		go func() {
			line, _ := c.text.ReadLine()
			done <- line
		}()
		go drip(c, "EHLO slow.client.example\r\n")
		select {
		case line := <-done:
			if !strings.HasPrefix(line, "421 4.4.2") {
				t.Fatalf("reply %q, want 421 4.4.2", line)
			}
		case <-time.After(timeout + time.Second):
			t.Fatal("no timeout reply")
		}
		if !c.closedByServer(5 * time.Second) {
			t.Fatal("connection still open")
		}
	})
	t.Run("data", func(t *testing.T) {
		t.Parallel()
		c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
		c.expect("250", "MAIL FROM:<app@example.com>")
		c.expect("250", "RCPT TO:<a@example.net>")
		c.expect("354", "DATA")
		done := make(chan string, 1)
		go func() {
			line, _ := c.text.ReadLine()
			done <- line
		}()
		go drip(c, "From: app@example.com\r\nSubject: slow\r\n\r\nhello\r\n.\r\n")
		select {
		case line := <-done:
			// Data that stops short is a read error (451 4.4.2) or
			// the idle timeout (421), never a 250.
			if !strings.HasPrefix(line, "421") && !strings.HasPrefix(line, "451") {
				t.Fatalf("reply %q, want a 4xx timeout", line)
			}
		case <-time.After(3 * timeout):
			t.Fatal("no timeout reply")
		}
		if n := len(storedRaw(t, ts)); n != 0 {
			t.Fatalf("%d messages stored", n)
		}
	})
}

// Garbage bytes of every value as commands: replies, no crash, and the
// server still serves the next client.
func TestHostileBinaryGarbage(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c, _ := dialRaw(t, ts.Addr)
	var b bytes.Buffer
	for i := range 256 {
		b.WriteByte(byte(i))
		if i%40 == 39 {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	c.write(b.String())
	c.closedByServer(5 * time.Second) // too many errors: go-smtp hangs up
	if conn, err := net.DialTimeout("tcp", ts.Addr, 5*time.Second); err != nil {
		t.Fatal(err)
	} else {
		conn.Close()
	}
	authenticated(t, ts.Addr, ts.Inst.ServerToken).expect("250", "NOOP")
}

// Found by TestHostileSlowloris: at command-timeout, go-smtp took the part
// of a line received so far as a whole command (bufio's ReadLine returns
// it without the timeout error), answered "501 5.5.2 Bad command" and
// waited again, so a client dripping bytes held its session for four
// timeouts and a line cut short could be read as a command. Now the
// timeout ends the session at once with 421 4.4.2, and the partial line
// is never answered.
func TestReadTimeoutPartialLineIsNotACommand(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.CommandTimeout = 300 * time.Millisecond }})
	for _, partial := range []string{"NOOP", "QUIT", "RSET", "MAIL FROM:<app@example.com>"} {
		c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
		c.write(partial)
		start := time.Now()
		line, err := c.text.ReadLine()
		if err != nil {
			t.Fatalf("%q: %v", partial, err)
		}
		if !strings.HasPrefix(line, "421 4.4.2") {
			t.Fatalf("%q then silence: %q, want 421 4.4.2", partial, line)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("the timeout took %s", d)
		}
		if !c.closedByServer(5 * time.Second) {
			t.Fatalf("%q: connection still open after the timeout", partial)
		}
	}
	// The same over STARTTLS: no plaintext reply inside TLS, just a close.
	c := greeted(t, ts.Addr)
	c.expect("220", "STARTTLS")
	tc := tls.Client(c.conn, ts.ClientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	tc.Write([]byte("EHLO x"))
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(tc); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the TLS connection stayed open past the command timeout")
		}
	}
}
