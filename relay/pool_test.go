package relay_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
)

// reuseDeliverer delivers to example.net's exchangers, keeping sessions
// for reuse, and lets the test see the connections it opened.
func reuseDeliverer(t *testing.T, w world, port, limit int) (*relay.MXDeliverer, func() []net.Conn) {
	var mu sync.Mutex
	var conns []net.Conn
	d := w.deliverer(t, port, func(c *relay.MXConfig) {
		c.ReuseTimeout, c.ReuseLimit = time.Minute, limit
		c.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var dialer net.Dialer
			conn, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
			return conn, err
		}
	})
	t.Cleanup(d.CloseIdle)
	return d, func() []net.Conn {
		mu.Lock()
		defer mu.Unlock()
		return append([]net.Conn(nil), conns...)
	}
}

func mxQueries(w world) int {
	n := 0
	for _, q := range w.dns.Queries() {
		if q.Type == "MX" {
			n++
		}
	}
	return n
}

// Messages to one domain share a session: one connection, one MX lookup,
// one EHLO; CloseIdle says QUIT.
func TestReuseSessionForSameDomain(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(loopback1)
	d, _ := reuseDeliverer(t, w, peer.Port(), 0)

	for i := range 3 {
		res, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg)
		if err != nil {
			t.Fatal(err)
		}
		checkOutcomes(t, res, relay.Delivered)
		if res.Host != "mx1.example.net" || res.IP != loopback1 {
			t.Errorf("message %d: host %q [%v]", i, res.Host, res.IP)
		}
	}
	if c, n := peer.Connections(), len(peer.Messages()); c != 1 || n != 3 {
		t.Errorf("%d connections for %d messages, want 1 for 3", c, n)
	}
	if q := mxQueries(w); q != 1 {
		t.Errorf("%d MX lookups, want 1", q)
	}
	if n := strings.Count(peer.Transcript(), "EHLO"); n != 1 {
		t.Errorf("%d EHLO, want 1", n)
	}
	d.CloseIdle()
	if !strings.Contains(peer.Transcript(), "QUIT") {
		t.Error("CloseIdle did not say QUIT")
	}
}

// A kept session the server dropped is replaced at once: the message
// goes through a new connection, with no verdict from the dead one.
func TestReuseDroppedSession(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(loopback1)
	d, conns := reuseDeliverer(t, w, peer.Port(), 0)

	if _, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg); err != nil {
		t.Fatal(err)
	}
	conns()[0].Close() // the connection dies while kept
	res, err := d.DeliverDomain(testContext(t), "example.net", envelope("carol@example.net"), testMsg)
	if err != nil {
		t.Fatal(err)
	}
	checkOutcomes(t, res, relay.Delivered)
	if c, n := peer.Connections(), len(peer.Messages()); c != 2 || n != 2 {
		t.Errorf("%d connections, %d messages; want 2 and 2", c, n)
	}
}

// A session that ended in a refusal is kept too, after RSET when MAIL had
// been accepted; ReuseLimit caps the messages per session.
func TestReuseAfterRefusalAndLimit(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "nobody@") {
			return smtpErr(550, [3]int{5, 1, 1}, "no such user")
		}
		return nil
	}})
	w.mx(loopback1)
	d, _ := reuseDeliverer(t, w, peer.Port(), 3)

	for _, rcpt := range []string{"nobody@example.net", "bob@example.net", "carol@example.net", "dave@example.net"} {
		if _, err := d.DeliverDomain(testContext(t), "example.net", envelope(rcpt), testMsg); err != nil {
			t.Fatal(err)
		}
	}
	if c, n := peer.Connections(), len(peer.Messages()); c != 2 || n != 3 {
		t.Errorf("%d connections, %d messages; want 2 (3 messages per session) and 3", c, n)
	}
	if !strings.Contains(peer.Transcript(), "RSET") {
		t.Error("no RSET after the refused transaction")
	}
}

// Without ReuseTimeout every message has its own session.
func TestNoReuseByDefault(t *testing.T) {
	w := newWorld(t)
	peer := smtptest.New(t, smtptest.Options{})
	w.mx(loopback1)
	d := w.deliverer(t, peer.Port())
	for range 2 {
		if _, err := d.DeliverDomain(testContext(t), "example.net", envelope("bob@example.net"), testMsg); err != nil {
			t.Fatal(err)
		}
	}
	if c := peer.Connections(); c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}
