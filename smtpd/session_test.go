package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

func TestGreetingAndAuthReplies(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c, greeting := dialRaw(t, ts.Addr)
	if greeting != "220 mx.test.example ESMTP Postern" {
		t.Fatalf("greeting %q", greeting)
	}
	ehlo := c.expect("250-", "EHLO client.test")
	for _, capability := range []string{"STARTTLS", "AUTH PLAIN LOGIN", "SIZE 10485760", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(ehlo, capability) {
			t.Errorf("EHLO reply lacks %s: %q", capability, ehlo)
		}
	}
	c.expect("235 2.7.0 Authentication successful", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	c.expect("503 5.5.1 Already authenticated", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	c.expect("221", "QUIT")
}

func TestAuthLoginChallenges(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)
	b64 := func(s string) string { return base64Std(s) }
	c.expect("334 "+b64("Username:"), "AUTH LOGIN")
	c.expect("334 "+b64("Password:"), "%s", b64("anything"))
	c.expect("235 2.7.0 Authentication successful", "%s", b64(ts.Inst.ServerToken))
}

func TestAuthRefusals(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	acct, _ := ts.Store.Server(ts.Inst.ServerID)
	off, err := ts.Store.CreateServer(store.Server{AccountID: acct.AccountID, Name: "No SMTP", DeliveryType: store.DeliveryLive}, auth.StoreToken("off-token-0000-0000-000000000000"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, pass, want string
	}{
		{"account token", ts.Inst.AccountToken, ts.Inst.AccountToken, "535 5.7.8 Authentication credentials invalid"},
		{"wrong token", "0f5e1c2a-0000-4000-8000-000000000000", "0f5e1c2a-0000-4000-8000-000000000000", "535 5.7.8 Authentication credentials invalid"},
		{"SMTP turned off", "off-token-0000-0000-000000000000", "off-token-0000-0000-000000000000",
			`535 5.7.8 Authentication credentials invalid: SMTP is turned off for server "No SMTP"; turn on SmtpApiActivated to send over SMTP`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := greeted(t, ts.Addr)
			if got := c.cmd("AUTH PLAIN %s", plainIR(tc.user, tc.pass)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			c.expect("530 5.7.0 Authentication required", "MAIL FROM:<app@example.com>")
		})
	}
	_ = off
}

func TestMailBeforeAuth(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)
	if got := c.cmd("MAIL FROM:<app@example.com>"); got != "530 5.7.0 Authentication required" {
		t.Fatalf("got %q", got)
	}
}

// Plaintext AUTH is refused from a client that is not local; the same
// client may authenticate after STARTTLS, or anywhere when allowed.
func TestPlaintextAuthFromRemote(t *testing.T) {
	remote := func(net.Addr) bool { return false }
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.IsLocal = remote }})
	c := greeted(t, ts.Addr)
	if got := c.cmd("AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken)); got != "538 5.7.11 Encryption required for requested authentication mechanism" {
		t.Fatalf("got %q", got)
	}
	c.expect("220", "STARTTLS")
	tc := tls.Client(c.conn, ts.ClientTLS)
	c2, _ := newRawClientNoGreeting(t, tc)
	c2.expect("250", "EHLO client.test")
	c2.expect("235 2.7.0", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))

	allowed := newTestServer(t, testOptions{mutate: func(c *Config) { c.IsLocal = remote; c.AllowPlaintextAuth = true }})
	authenticated(t, allowed.Addr, allowed.Inst.ServerToken)
}

func TestAddressSyntax(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("501 5.1.3 Bad sender address syntax", "MAIL FROM:<app@-bad-.example>")
	c.expect("250", "MAIL FROM:<app@example.com>")
	// go-smtp's own path parser refuses what is not a path at all, with
	// its 501 5.5.2; Postern refuses the paths it lets through but that
	// cannot be delivered. A quoted local part reaches Postern unquoted,
	// so one with a space cannot be told from garbage and is refused.
	for _, tc := range []struct{ rcpt, want string }{
		{"<alice>", "501 5.5.2"},
		{"<alice@>", "501 5.5.2"},
		{"<@example.com>", "501 5.5.2"},
		{"<alice@exa mple.com>", "501 5.5.2"},
		{"<alice@-bad-.com>", "501 5.1.3 Bad recipient address syntax"},
		{"<alice@example..com>", "501 5.1.3 Bad recipient address syntax"},
		{"<alice@exa_mple.com>", "501 5.1.3 Bad recipient address syntax"},
		{"<alice@[not-an-ip]>", "501 5.1.3 Bad recipient address syntax"},
		{"<\"odd name\"@example.net>", "501 5.1.3 Bad recipient address syntax"},
	} {
		if got := c.cmd("RCPT TO:%s", tc.rcpt); !strings.HasPrefix(got, tc.want) {
			t.Errorf("RCPT TO:%s got %q, want %q", tc.rcpt, got, tc.want)
		}
	}
	for _, good := range []string{"<alice@example.net>", "<\"odd.name\"@example.net>", "<jörg@bücher.example>", "<x@[8.8.8.8]>", "<x@[IPv6:2a00:1450::1]>"} {
		c.expect("250", "RCPT TO:%s", good)
	}
}

// A recipient at an address literal of a loopback, private or link-local
// address is refused: the relay would open SMTP there for the tenant.
// The operator's allow-private-destinations accepts it.
func TestPrivateAddressLiteralRefused(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	for _, tc := range []struct{ rcpt, ip string }{
		{"x@[127.0.0.1]", "127.0.0.1"}, {"x@[IPv6:::1]", "::1"}, {"x@[10.1.2.3]", "10.1.2.3"},
		{"x@[169.254.169.254]", "169.254.169.254"}, {"x@[IPv6:::ffff:192.168.0.1]", "192.168.0.1"}, {"x@[IPv6:fe80::1]", "fe80::1"},
	} {
		want := fmt.Sprintf("550 5.7.1 Recipient <%s> is at %s, a loopback, private or link-local address; Postern does not deliver there", tc.rcpt, tc.ip)
		if got := c.cmd("RCPT TO:<%s>", tc.rcpt); got != want {
			t.Errorf("RCPT TO:<%s>: %q, want %q", tc.rcpt, got, want)
		}
	}
	// The rest of the transaction goes on.
	c.expect("250", "RCPT TO:<alice@example.net>")
	queuedID(t, c.sendData("Subject: hi\r\n\r\nhi\r\n"))

	allowed := newTestServer(t, testOptions{mutate: func(c *Config) { c.AllowPrivateDestinations = true }})
	c = authenticated(t, allowed.Addr, allowed.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<x@[127.0.0.1]>")
}

func TestRecipientLimit(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	for i := 1; i <= 50; i++ {
		c.expect("250", "RCPT TO:<r%d@example.net>", i)
	}
	if got := c.cmd("RCPT TO:<r51@example.net>"); !strings.HasPrefix(got, "452 4.5.3 Too many recipients") {
		t.Fatalf("51st recipient: %q", got)
	}
	// The message still goes to the first 50.
	id := queuedID(t, c.sendData("Subject: fifty\r\n\r\nhi\r\n"))
	m, err := ts.Store.Message(ts.Inst.ServerID, id)
	if err != nil || len(m.Recipients) != 50 {
		t.Fatalf("stored recipients %d, %v", len(m.Recipients), err)
	}
}

func TestOversizeMessage(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.MaxMessageBytes = 64 << 10 }})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 99)+"\r\n", 1000)
	if got := c.sendData(big); got != "552 5.3.4 Message too big; the limit is 64 KiB (65536 bytes)" {
		t.Fatalf("got %q", got)
	}
	// The connection is still usable, and nothing was stored.
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RSET")
	c.expect("552 5.3.4", "MAIL FROM:<app@example.com> SIZE=100000")
	if q, _ := ts.Store.Queue(10); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
}

func TestUnknownMessageStream(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	got := c.sendData("X-PM-Message-Stream: broadcasts\r\nSubject: s\r\n\r\nhi\r\n")
	want := `550 5.7.1 Message stream "broadcasts" does not exist on this server, or is archived; remove X-PM-Message-Stream or use "outbound"`
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	queuedID(t, c.sendData("X-PM-Message-Stream: outbound\r\nSubject: s\r\n\r\nhi\r\n"))
}

// After the failure limit the address gets 421 and the connection closes;
// later attempts from it are refused even with a valid token, while
// another address still gets in.
func TestAuthThrottle(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	bad := plainIR("nope", "0f5e1c2a-0000-4000-8000-000000000000")
	c := greeted(t, ts.Addr)
	for i := 1; i <= 4; i++ {
		c.expect("535 5.7.8", "AUTH PLAIN %s", bad)
	}
	got := c.cmd("AUTH PLAIN %s", bad)
	if !strings.HasPrefix(got, "421 4.7.0 Too many failed authentication attempts from your address") {
		t.Fatalf("5th failure: %q", got)
	}
	if _, err := c.text.ReadLine(); !errors.Is(err, io.EOF) {
		t.Fatalf("connection still open after 421: %v", err)
	}
	c2 := greeted(t, ts.Addr)
	if got := c2.cmd("AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken)); !strings.HasPrefix(got, "421 4.7.0") {
		t.Fatalf("valid token from the throttled address: %q", got)
	}
	// 127.0.0.2 is another loopback address.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c3, _ := newRawClient(t, conn)
	c3.expect("250", "EHLO other.test")
	c3.expect("235 2.7.0", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
}

// The stored message: metadata from the headers, X-PM-* and Bcc removed,
// Postern's Message-ID and Received added, the queue entry written, all of
// it still there after the store is reopened.
func TestStoredMessage(t *testing.T) {
	ts := newTestServer(t, testOptions{live: true})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<bounces@example.com>")
	for _, r := range []string{"alice@example.net", "bob@example.org", "carol@example.net", "secret@example.net"} {
		c.expect("250", "RCPT TO:<%s>", r)
	}
	before := time.Now().UTC()
	id := queuedID(t, c.sendData(testMessage))
	c.expect("221", "QUIT")

	check := func(st *bolt.Store) {
		t.Helper()
		m, err := st.Message(ts.Inst.ServerID, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.MessageID != id || m.ServerID != ts.Inst.ServerID || m.EnvelopeFrom != "bounces@example.com" ||
			m.From != `"App" <app@example.com>` || m.Subject != "Hello" || m.Tag != "welcome" ||
			m.MessageStream != "outbound" || m.Status != store.StatusQueued {
			t.Fatalf("metadata %+v", m)
		}
		if fmt.Sprint(m.To) != "[{alice@example.net Alice} {bob@example.org }]" || fmt.Sprint(m.Cc) != "[{carol@example.net }]" ||
			fmt.Sprint(m.Bcc) != "[{secret@example.net }]" {
			t.Fatalf("To %v Cc %v Bcc %v", m.To, m.Cc, m.Bcc)
		}
		if strings.Join(m.Recipients, ",") != "alice@example.net,bob@example.org,carol@example.net,secret@example.net" {
			t.Fatalf("recipients %v", m.Recipients)
		}
		if len(m.Metadata) != 2 || m.Metadata["client-id"] != "42" || m.Metadata["Color"] != "blue" {
			t.Fatalf("metadata %v", m.Metadata)
		}
		if m.ReceivedAt.Before(before.Add(-time.Second)) || m.ReceivedAt.After(time.Now().Add(time.Second)) {
			t.Fatalf("ReceivedAt %v", m.ReceivedAt)
		}
		raw, err := st.RawMessage(ts.Inst.ServerID, id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Size != len(raw) {
			t.Fatalf("Size %d, raw %d bytes", m.Size, len(raw))
		}
		header, body, _ := strings.Cut(string(raw), "\r\n\r\n")
		if !strings.HasPrefix(header, "Received: from client.test ([127.0.0.1])\r\n\tby mx.test.example (Postern) with ESMTPA id "+id+";") {
			t.Fatalf("Received field: %q", header)
		}
		for _, gone := range []string{"\nX-PM-", "\nBcc:", "secret@example.net", "client-chosen@example.com"} {
			if strings.Contains(header, gone) {
				t.Errorf("stored header still has %q:\n%s", gone, header)
			}
		}
		if !strings.Contains(header, "\r\nMessage-ID: <"+id+"@mx.test.example>") || !strings.Contains(header, "\r\nDate: ") {
			t.Errorf("Message-ID or Date missing:\n%s", header)
		}
		if body != "Body line one.\r\nBody line two.\r\n" {
			t.Errorf("body %q", body)
		}
		q, err := st.Queue(10)
		if err != nil || len(q) != 1 || q[0].MessageID != id || q[0].ServerID != ts.Inst.ServerID {
			t.Fatalf("queue %+v %v", q, err)
		}
	}
	check(ts.Store)

	path := filepath.Join(ts.dir, bolt.FileName)
	if err := ts.Store.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	check(reopened)
	if err := reopened.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestKeepID(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	id := queuedID(t, c.sendData("X-PM-KeepID: true\r\nMessage-ID: <mine@app.example>\r\nSubject: s\r\n\r\nhi\r\n"))
	raw, err := ts.Store.RawMessage(ts.Inst.ServerID, id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "\r\nMessage-ID: <mine@app.example>\r\n") || strings.Contains(string(raw), "@mx.test.example>") {
		t.Fatalf("client Message-ID not kept:\n%s", raw)
	}
}

// Several messages on one connection, with RSET between two of them.
func TestSeveralMessagesOnOneConnection(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		c.expect("250", "MAIL FROM:<app@example.com>")
		c.expect("250", "RCPT TO:<n%d@example.net>", i)
		ids[queuedID(t, c.sendData(fmt.Sprintf("Subject: number %d\r\n\r\nhi\r\n", i)))] = true
		c.expect("250", "RSET")
	}
	if len(ids) != 3 {
		t.Fatalf("IDs %v", ids)
	}
	for id := range ids {
		if _, err := ts.Store.Message(ts.Inst.ServerID, id); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
}

// A store that fails on write: 451 4.3.0, nothing recorded; when the
// store recovers, the same connection can send.
func TestStorageFailure(t *testing.T) {
	var fail atomic.Bool
	ts := newTestServer(t, testOptions{storeOptions: bolt.Options{BeforeCommit: func() error {
		if fail.Load() {
			return errors.New("injected: input/output error")
		}
		return nil
	}}})
	fail.Store(true)
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	if got := c.sendData("Subject: s\r\n\r\nhi\r\n"); got != "451 4.3.0 Temporary storage failure; the message was not accepted, try again later" {
		t.Fatalf("got %q", got)
	}
	if q, _ := ts.Store.Queue(10); len(q) != 0 {
		t.Fatalf("queue after failure: %+v", q)
	}
	if m, _ := ts.Store.Messages(ts.Inst.ServerID, 10); len(m) != 0 {
		t.Fatalf("messages after failure: %+v", m)
	}
	fail.Store(false)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	queuedID(t, c.sendData("Subject: s\r\n\r\nhi\r\n"))
}

func TestSessionLimit(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.MaxSessions = 2 }})
	greeted(t, ts.Addr)
	greeted(t, ts.Addr)
	_, reply := dialRaw(t, ts.Addr)
	if reply != "421 4.3.2 Too many concurrent sessions; try again later" {
		t.Fatalf("third session: %q", reply)
	}
}

// One address cannot take every session: past MaxSessionsPerAddress its
// connections get 421 4.7.0, while another address still gets in; a
// slot comes back when a session ends.
func TestSessionLimitPerAddress(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.MaxSessions = 10; c.MaxSessionsPerAddress = 3 }})
	var open []*rawClient
	for range 3 {
		open = append(open, greeted(t, ts.Addr))
	}
	_, reply := dialRaw(t, ts.Addr)
	if reply != "421 4.7.0 Too many connections from your address" {
		t.Fatalf("fourth session from 127.0.0.1: %q", reply)
	}
	// 127.0.0.2 is another address.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, greeting := newRawClient(t, conn); !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("a session from 127.0.0.2: %q", greeting)
	}
	open[0].expect("221", "QUIT")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, reply = dialRaw(t, ts.Addr)
		if strings.HasPrefix(reply, "220 ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.HasPrefix(reply, "220 ") {
		t.Fatalf("after one session from 127.0.0.1 ended: %q", reply)
	}
}

// Before AUTH, a client may send MaxPreauthCommands commands other than
// AUTH; the next gets 421 4.7.0 and the connection closes. AUTH and its
// SASL responses do not count, and after AUTH there is no such limit.
func TestPreauthCommandLimit(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr) // EHLO: the first command
	for range 9 {
		c.expect("250", "NOOP")
	}
	got := c.cmd("NOOP")
	if !strings.HasPrefix(got, "421 4.7.0") || !strings.Contains(got, "Too many commands before authentication") {
		t.Fatalf("the 11th command before AUTH: %q", got)
	}
	if _, err := c.text.ReadLine(); err == nil {
		t.Fatal("the connection is still open after 421")
	}

	// AUTH LOGIN's exchange, and failed AUTHs, are not counted.
	c = greeted(t, ts.Addr)
	for range 3 {
		c.expect("334", "AUTH LOGIN")
		c.expect("334", "%s", base64Std("nobody"))
		c.expect("535", "%s", base64Std("0f5e1c2a-0000-4000-8000-000000000000"))
	}
	for range 9 {
		c.expect("250", "NOOP")
	}
	c.expect("235", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	for range 30 {
		c.expect("250", "NOOP")
	}
}

// After STARTTLS the commands before AUTH are counted too: the 11th
// (STARTTLS and the EHLOs included; AUTH and its SASL responses not) has
// its reply, and the connection then closes, since under TLS Postern
// cannot write a reply of its own. AUTH within the limit goes on.
func TestPreauthCommandLimitAfterSTARTTLS(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := greeted(t, ts.Addr)    // EHLO: 1
	c.expect("220", "STARTTLS") // 2
	tc := tls.Client(c.conn, ts.ClientTLS)
	c2, _ := newRawClientNoGreeting(t, tc)
	c2.expect("250", "EHLO client.test") // 3
	for range 8 {                        // 4 to 11
		c2.expect("250", "NOOP")
	}
	c2.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c2.conn, "NOOP\r\n"); err == nil {
		if line, err := c2.text.ReadLine(); err == nil {
			t.Fatalf("the 12th command before AUTH, under TLS: %q, want the connection closed", line)
		}
	}

	c = greeted(t, ts.Addr)
	c.expect("220", "STARTTLS")
	c2, _ = newRawClientNoGreeting(t, tls.Client(c.conn, ts.ClientTLS))
	c2.expect("250", "EHLO client.test")
	for range 3 {
		c2.expect("334", "AUTH LOGIN")
		c2.expect("334", "%s", base64Std("nobody"))
		c2.expect("535", "%s", base64Std("0f5e1c2a-0000-4000-8000-000000000000"))
	}
	for range 7 {
		c2.expect("250", "NOOP")
	}
	c2.expect("235", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	for range 20 {
		c2.expect("250", "NOOP")
	}
}

// A session that has not authenticated within PreauthTimeout of
// connecting is closed with 421 4.7.0, however often it sends NOOP; one
// that authenticated in time is not.
func TestPreauthTimeout(t *testing.T) {
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.PreauthTimeout = 300 * time.Millisecond; c.MaxPreauthCommands = 1000 }})
	idle := greeted(t, ts.Addr)
	busy := greeted(t, ts.Addr)
	authed := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	var got string
	for range 100 {
		got = busy.cmd("NOOP")
		if !strings.HasPrefix(got, "250") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := "421 4.7.0 mx.test.example Authentication required within 300ms of connecting; closing the connection"
	if got != want {
		t.Fatalf("a session sending NOOPs past preauth-timeout: %q, want %q", got, want)
	}
	if got, _ := idle.text.ReadLine(); got != want {
		t.Fatalf("an idle session past preauth-timeout: %q, want %q", got, want)
	}
	authed.expect("250", "NOOP")
}

// 32 concurrent clients × 100 messages: every 250 has exactly one stored
// message and one queue entry, and nothing else is stored.
func TestConcurrentClients(t *testing.T) {
	const clients, perClient = 32, 100
	ts := newTestServer(t, testOptions{live: true, mutate: func(c *Config) { c.MaxSessionsPerAddress = clients }})
	var mu sync.Mutex
	accepted := map[string]bool{}
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
			for j := 0; j < perClient; j++ {
				c.expect("250", "MAIL FROM:<app@example.com>")
				c.expect("250", "RCPT TO:<c%d@example.net>", i)
				id := queuedID(t, c.sendData(fmt.Sprintf("Subject: %d/%d\r\n\r\n%s\r\n", i, j, strings.Repeat("x", 2000))))
				mu.Lock()
				if accepted[id] {
					t.Errorf("ID %s given twice", id)
				}
				accepted[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(accepted) != clients*perClient {
		t.Fatalf("%d accepted", len(accepted))
	}
	q, err := ts.Store.Queue(2 * clients * perClient)
	if err != nil {
		t.Fatal(err)
	}
	queued := map[string]int{}
	for _, e := range q {
		queued[e.MessageID]++
	}
	msgs, err := ts.Store.Messages(ts.Inst.ServerID, 2*clients*perClient)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != len(accepted) || len(msgs) != len(accepted) {
		t.Fatalf("%d accepted, %d queue entries, %d messages", len(accepted), len(q), len(msgs))
	}
	for _, m := range msgs {
		if !accepted[m.MessageID] || queued[m.MessageID] != 1 {
			t.Fatalf("message %s: accepted %v, queue entries %d", m.MessageID, accepted[m.MessageID], queued[m.MessageID])
		}
	}
}

// A Serve that starts only after Shutdown has begun returns at once
// instead of accepting forever (go-smtp's Shutdown knows only listeners
// its Serve has registered).
func TestServeAfterShutdownReturns(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	if err := ts.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve after Shutdown is still accepting")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("the listener given after Shutdown still accepts connections")
	}
}
