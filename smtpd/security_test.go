package smtpd

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// No open relay: no path stores a message without a successful AUTH,
// loopback included (where plaintext AUTH is allowed, AUTH is still
// required). Each path ends in 530 (or go-smtp's 502/503 for a command
// out of sequence) and nothing is stored.
func TestNoOpenRelay(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	before := countMessages(t, ts.Store, ts.Inst.ServerID)
	check := func(c *rawClient, name string) {
		t.Helper()
		for _, cmd := range []string{"MAIL FROM:<app@example.com>", "RCPT TO:<alice@example.net>", "DATA", "BDAT 5 LAST"} {
			got := c.cmd("%s", cmd)
			if !strings.HasPrefix(got, "530 ") && !strings.HasPrefix(got, "502 ") && !strings.HasPrefix(got, "503 ") {
				t.Errorf("%s: %s got %q, want a refusal", name, cmd, got)
			}
		}
	}

	c := greeted(t, ts.Addr)
	check(c, "without AUTH, from loopback")

	c = greeted(t, ts.Addr)
	c.expect("535", "AUTH PLAIN %s", plainIR("nobody", "00000000-0000-4000-8000-000000000000"))
	check(c, "after a failed AUTH")

	c = greeted(t, ts.Addr)
	c.expect("454", "AUTH PLAIN %s", "!!!garbage")
	check(c, "after an AUTH with garbage base64")

	c = greeted(t, ts.Addr)
	c.expect("535", "AUTH PLAIN %s", plainIR(ts.Inst.AccountToken, ts.Inst.AccountToken))
	check(c, "after AUTH with an account token")

	// STARTTLS starts over: an AUTH before it counts for nothing after.
	c = authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("220", "STARTTLS")
	tc := tls.Client(c.conn, ts.ClientTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c2, _ := newRawClientNoGreeting(t, tc)
	c2.expect("250", "EHLO client.test")
	check(c2, "after STARTTLS reset the AUTH")

	// BDAT with the whole message in the pipeline, without AUTH.
	conn, err := net.Dial("tcp", ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := "From: app@example.com\r\n\r\nhi\r\n"
	conn.Write([]byte("EHLO c\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<alice@example.net>\r\nBDAT " + itoa(len(msg)) + " LAST\r\n" + msg + "QUIT\r\n"))
	r := bufio.NewReader(conn)
	var replies []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		replies = append(replies, strings.TrimSpace(line))
	}
	for _, l := range replies {
		if strings.HasPrefix(l, "250 2.0.0 OK: queued") {
			t.Errorf("BDAT without AUTH: %q", replies)
		}
	}
	if n := countMessages(t, ts.Store, ts.Inst.ServerID); n != before {
		t.Errorf("%d messages stored without AUTH", n-before)
	}
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}

// Tenant isolation over SMTP, two accounts: a server's token stores its
// messages in its own server only, whatever the envelope or From says;
// one server's suppression does not refuse the recipient on another.
func TestSMTPTenantIsolation(t *testing.T) {
	ps := newPolicyServer(t, store.PolicyAny, nil)
	other, err := ps.Store.CreateAccount("Tenant B", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokB := auth.NewToken()
	srvB, err := ps.Store.CreateServer(store.Server{AccountID: other.ID, Name: "B", DeliveryType: store.DeliveryLive, SmtpApiActivated: true}, auth.StoreToken(tokB), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A suppression on A's server.
	suppress(t, ps.testServer, ps.liveID, ps.liveToken, "gone@example.net", time.Now())

	// A's token, trying to speak for B in every way a client could.
	c := authenticated(t, ps.Addr, ps.liveToken)
	c.expect("250", "MAIL FROM:<app@good.example>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	idA := queuedID(t, c.sendData("From: app@good.example\r\nX-PM-Server-Token: "+tokB+"\r\nX-Postmark-Server-Token: "+tokB+"\r\nSubject: as B?\r\n\r\nhi\r\n"))
	c.expect("503", "AUTH PLAIN %s", plainIR(tokB, tokB)) // no second AUTH on a session
	if _, err := ps.Store.Message(srvB.ID, idA); err == nil {
		t.Errorf("A's message %s is visible in B's server", idA)
	}
	if _, err := ps.Store.Message(ps.liveID, idA); err != nil {
		t.Errorf("A's message %s not in A's server: %v", idA, err)
	}
	if raw := mustRaw(t, ps.Store, ps.liveID, idA); strings.Contains(strings.ToLower(raw), "x-pm-server-token") {
		t.Errorf("an X-PM-* field was stored")
	}

	// B sends to the address A suppressed: accepted; A cannot see it.
	cb := authenticated(t, ps.Addr, tokB)
	cb.expect("250", "MAIL FROM:<app@b.example>")
	cb.expect("250", "RCPT TO:<gone@example.net>")
	idB := queuedID(t, cb.sendData("From: app@b.example\r\nSubject: B\r\n\r\nhi\r\n"))
	if _, err := ps.Store.Message(ps.liveID, idB); err == nil {
		t.Errorf("B's message %s is visible through A's server", idB)
	}
	// And A is still refused the suppressed address.
	c = authenticated(t, ps.Addr, ps.liveToken)
	c.expect("250", "MAIL FROM:<app@good.example>")
	c.expect("550 5.1.1", "RCPT TO:<gone@example.net>")
}

func mustRaw(t *testing.T, st *bolt.Store, serverID int64, id string) string {
	t.Helper()
	raw, err := st.RawMessage(serverID, id)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// A slow brute force: failures spread over many connections and over
// time still add up within the window and shut the address out; the
// shut-out lasts the window. (TestAuthThrottle
// covers the fast case and another address's valid token.)
func TestAuthThrottleSlowBruteForce(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		c.Throttle = auth.NewThrottle(auth.ThrottleConfig{Failures: 5, Window: 5 * time.Minute, Now: clock})
	}})
	bad := plainIR("nope", "0f5e1c2a-0000-4000-8000-000000000000")
	// 4 failures, one per connection, a minute apart.
	for range 4 {
		c := greeted(t, ts.Addr)
		c.expect("535", "AUTH PLAIN %s", bad)
		c.conn.Close()
		now = now.Add(time.Minute)
	}
	// The 5th, 4 minutes after the first: all within the window.
	c := greeted(t, ts.Addr)
	got := c.cmd("AUTH PLAIN %s", bad)
	if !strings.HasPrefix(got, "421 4.7.0") {
		t.Fatalf("the 5th failure within the window: %q", got)
	}
	c = greeted(t, ts.Addr)
	c.expect("421 4.7.0", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	// The shut-out lasts the window, then a valid token works again.
	now = now.Add(5*time.Minute + time.Second)
	c = greeted(t, ts.Addr)
	c.expect("235", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
}

// A guesser who also holds a valid token cannot reset its count by
// logging in between guesses: 4 failures, a success, 4 failures, and
// the 5th failure shuts the address out.
func TestAuthThrottleSuccessForgivesNothing(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	bad := plainIR("nope", "0f5e1c2a-0000-4000-8000-000000000000")
	good := plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken)
	c := greeted(t, ts.Addr)
	for range 4 {
		c.expect("535 5.7.8", "AUTH PLAIN %s", bad)
	}
	c.conn.Close()
	c = greeted(t, ts.Addr)
	c.expect("235 2.7.0", "AUTH PLAIN %s", good)
	c.conn.Close()
	c = greeted(t, ts.Addr)
	if got := c.cmd("AUTH PLAIN %s", bad); !strings.HasPrefix(got, "421 4.7.0 Too many failed authentication attempts") {
		t.Fatalf("the 5th failure, after a success: %q", got)
	}
	c = greeted(t, ts.Addr)
	c.expect("421 4.7.0", "AUTH PLAIN %s", good)
}
