package smtpd

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/store/bolt"
)

// startStalled begins a message and sends part of its data, holding its
// reservation until finish is called.
func startStalled(t *testing.T, ts *testServer, mailArgs string) (finish func() string) {
	t.Helper()
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>%s", mailArgs)
	c.expect("250", "RCPT TO:<a@example.net>")
	c.expect("354", "DATA")
	c.write("From: app@example.com\r\nSubject: stalled\r\n\r\n" + body(1000) + "\r\n")
	return func() string {
		c.write(".\r\n")
		return c.readReply()
	}
}

// waitUsed waits until the in-flight cap holds n bytes.
func waitUsed(t *testing.T, ts *testServer, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for ts.srv.inflight.Used() != n {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d bytes, want %d", ts.srv.inflight.Used(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const replyBusy = "451 4.3.2 System busy; too much mail in flight, try again later"

// The cap refuses: two stalled messages without SIZE reserve
// max-message-size each and fill the cap; a third waits InflightWait and
// gets 451 4.3.2; a message that declared a small SIZE fits beside them
// only while it sends no more than it declared (or the cap has room for
// the rest); once the stalled ones finish, sending resumes and nothing
// stays reserved.
func TestInflightCapRefuses(t *testing.T) {
	const max = 1 << 20
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		c.MaxMessageBytes = max
		c.MaxInflightBytes = 2*max + 64<<10
		c.InflightWait = 300 * time.Millisecond
	}})
	finish1 := startStalled(t, ts, "")
	finish2 := startStalled(t, ts, "")
	waitUsed(t, ts, 2*max)

	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	send := func(mailArgs string, size int) string {
		c.expect("250", "MAIL FROM:<app@example.com>%s", mailArgs)
		c.expect("250", "RCPT TO:<b@example.net>")
		return c.sendData("From: app@example.com\r\nSubject: third\r\n\r\n" + body(size) + "\r\n")
	}
	start := time.Now()
	if got := send("", 100); got != replyBusy {
		t.Fatalf("no room: %q, want %q", got, replyBusy)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("refused after %s, before InflightWait", d)
	}
	// SIZE=2000 reserves 2000 bytes: it fits.
	queuedID(t, send(" SIZE=2000", 500))
	// A client that declares SIZE=2000 and sends 500 KiB needs more
	// room than there is.
	if got := send(" SIZE=2000", 500<<10); got != replyBusy {
		t.Fatalf("past its SIZE with the cap full: %q, want %q", got, replyBusy)
	}
	waitUsed(t, ts, 2*max)
	queuedID(t, finish1())
	queuedID(t, finish2())
	waitUsed(t, ts, 0)
	queuedID(t, send("", 100))
	// Past its SIZE with room in the cap: the reservation grows.
	queuedID(t, send(" SIZE=2000", 500<<10))
	waitUsed(t, ts, 0)
}

// The cap queues: a message that finds the cap full waits, and goes
// through as soon as room is released within InflightWait.
func TestInflightCapWaits(t *testing.T) {
	const max = 1 << 20
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		c.MaxMessageBytes = max
		c.MaxInflightBytes = max
		c.InflightWait = 10 * time.Second
	}})
	finish := startStalled(t, ts, "")
	waitUsed(t, ts, max)
	done := make(chan string, 1)
	goAhead := make(chan struct{})
	go func() {
		c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
		c.expect("250", "MAIL FROM:<app@example.com>")
		c.expect("250", "RCPT TO:<b@example.net>")
		c.expect("354", "DATA")
		close(goAhead)
		c.write("From: app@example.com\r\nSubject: waits\r\n\r\nhi\r\n.\r\n")
		done <- c.readReply()
	}()
	// The 354 is not held back while the session waits for room (the
	// session's replies are otherwise sent when it next reads).
	select {
	case <-goAhead:
	case <-time.After(5 * time.Second):
		t.Fatal("no 354 while the session waits for room")
	}
	select {
	case got := <-done:
		t.Fatalf("did not wait: %q", got)
	case <-time.After(500 * time.Millisecond):
	}
	queuedID(t, finish())
	select {
	case got := <-done:
		queuedID(t, got)
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the room was released")
	}
	waitUsed(t, ts, 0)
}

// Many concurrent clients under a small cap: every message is either
// accepted or refused with 451 4.3.2, and the cap never holds more than
// its limit.
func TestInflightCapConcurrent(t *testing.T) {
	const max = 256 << 10
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		c.MaxMessageBytes = max
		c.MaxInflightBytes = 4 * max
		c.InflightWait = time.Second
	}})
	stop := make(chan struct{})
	peak := make(chan int64, 1)
	go func() {
		var p int64
		for {
			select {
			case <-stop:
				peak <- p
				return
			default:
			}
			p = maxInt64(p, ts.srv.inflight.Used())
			time.Sleep(time.Millisecond)
		}
	}()
	results := make(chan string, 12*3)
	for i := range 12 {
		go func() {
			c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
			for j := range 3 {
				c.expect("250", "MAIL FROM:<app@example.com>")
				c.expect("250", "RCPT TO:<c%d@example.net>", i)
				results <- c.sendData(fmt.Sprintf("From: app@example.com\r\nSubject: %d/%d\r\n\r\n%s\r\n", i, j, body(200<<10)))
			}
		}()
	}
	accepted, busy := 0, 0
	for range 12 * 3 {
		got := <-results
		switch {
		case strings.HasPrefix(got, "250 "):
			accepted++
		case got == replyBusy:
			busy++
		default:
			t.Fatalf("reply %q", got)
		}
	}
	close(stop)
	if p := <-peak; p > 4*max {
		t.Fatalf("peak in flight %d > cap %d", p, 4*max)
	}
	waitUsed(t, ts, 0)
	t.Logf("accepted %d, refused busy %d", accepted, busy)
}

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// Once a message is read, its session keeps of the cap only what the
// message holds: clients that declared no SIZE (most libraries) do not
// wait on each other's commits. Each such message reserves the whole
// max-message-size while it is sent; under a cap of two, three are read
// and wait for their commit together, and all three are accepted.
func TestInflightKeepsWhatTheMessageHolds(t *testing.T) {
	const max = 1 << 20
	var hold atomic.Bool
	release := make(chan struct{})
	ts := newTestServer(t, testOptions{
		mutate: func(c *Config) {
			c.MaxMessageBytes = max
			c.MaxInflightBytes = 2 * max
			c.InflightWait = 300 * time.Millisecond
		},
		storeOptions: bolt.Options{BeforeCommit: func() error {
			if hold.Load() {
				<-release
			}
			return nil
		}},
	})
	var clients []*rawClient
	for range 3 {
		clients = append(clients, authenticated(t, ts.Addr, ts.Inst.ServerToken))
	}
	hold.Store(true)
	replies := make(chan string, 3)
	for i, c := range clients {
		go func() {
			c.expect("250", "MAIL FROM:<app@example.com>")
			c.expect("250", "RCPT TO:<k%d@example.net>", i)
			replies <- c.sendData(fmt.Sprintf("From: app@example.com\r\nSubject: %d\r\n\r\n%s\r\n", i, body(1000)))
		}()
	}
	// Longer than InflightWait: a session that found no room has its 451.
	time.Sleep(time.Second)
	if used := ts.srv.inflight.Used(); used > 3*(16<<10) {
		t.Errorf("%d bytes in flight for three messages of about 1 KB waiting for their commit", used)
	}
	close(release)
	for range 3 {
		queuedID(t, <-replies)
	}
	waitUsed(t, ts, 0)
}
