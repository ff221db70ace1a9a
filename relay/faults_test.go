package relay_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// Peer faults, end to end: a message accepted by the intake meets a
// mail exchanger that misbehaves, and ends in the event (and bounce
// type) the failure calls for. Some peers are smtptest's; those that
// go-smtp's server cannot play (a refused DATA command, a reply line of
// megabytes, a hang-up without QUIT, a stall before any reply) are
// scripted by rawPeer.

// script answers one stage of a session. An empty reply lets the stage
// succeed; "close" hangs up; "reset" resets the connection (RST); "stall"
// answers nothing until the test ends.
type script map[string]string

// rawPeer is an SMTP server written by hand, answering as its script
// says at each stage: "greeting", a command verb ("EHLO", "MAIL",
// "RCPT", "DATA", ...), "." for the end of the message, and "after."
// for what follows the end of the message's reply.
type rawPeer struct {
	t        testing.TB
	ln       net.Listener
	sc       script
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	messages int
	conns    int
	verbs    []string // the commands received, in order
}

func (e *e2e) rawPeer(addr netip.Addr, sc script) *rawPeer {
	e.T.Helper()
	ln := e.TakeReserved(addr)
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, uint16(e.MXPort)).String()); err != nil {
			e.T.Fatal(err)
		}
	}
	p := &rawPeer{t: e.T, ln: ln, sc: sc, stop: make(chan struct{})}
	p.wg.Add(1)
	go p.serve()
	e.T.Cleanup(func() {
		close(p.stop)
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *rawPeer) Messages() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.messages
}

func (p *rawPeer) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns++
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			go func() { <-p.stop; c.Close() }()
			p.session(c)
		}()
	}
}

// act performs the scripted answer to a stage; false ends the session.
func (p *rawPeer) act(c net.Conn, stage, def string) bool {
	reply, ok := p.sc[stage]
	if !ok || reply == "" {
		reply = def
	}
	switch reply {
	case "close":
		return false
	case "reset":
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		return false
	case "stall":
		<-p.stop
		return false
	case "flood":
		// One multi-line reply that never ends, each line short.
		line := []byte("250-" + strings.Repeat("x", 1000) + "\r\n")
		for {
			if _, err := c.Write(line); err != nil {
				return false
			}
		}
	}
	if _, err := c.Write([]byte(reply + "\r\n")); err != nil {
		return false
	}
	return !strings.HasPrefix(reply, "421")
}

func (p *rawPeer) session(c net.Conn) {
	if !p.act(c, "greeting", "220 raw.test ESMTP") {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		p.mu.Lock()
		p.verbs = append(p.verbs, verb)
		p.mu.Unlock()
		switch verb {
		case "EHLO":
			if !p.act(c, "EHLO", "250-raw.test\r\n250 8BITMIME") {
				return
			}
		case "QUIT":
			p.act(c, "QUIT", "221 bye")
			return
		case "DATA":
			if !p.act(c, "DATA", "354 go ahead") {
				return
			}
			if p.sc["DATA"] != "" && !strings.HasPrefix(p.sc["DATA"], "3") {
				continue // refused: no message follows
			}
			if p.sc["in-data"] != "" {
				r.ReadString('\n')
				if !p.act(c, "in-data", "") {
					return
				}
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			reply := p.sc["."]
			if reply == "" || strings.HasPrefix(reply, "2") {
				p.mu.Lock()
				p.messages++
				p.mu.Unlock()
			}
			if !p.act(c, ".", "250 2.0.0 queued") {
				return
			}
			if _, ok := p.sc["after."]; ok && !p.act(c, "after.", "") {
				return
			}
		default:
			if !p.act(c, verb, "250 2.0.0 ok") {
				return
			}
		}
	}
}

// faultServer is a Live server whose account may send from example.com
// (registered without keys: the messages go unsigned, and no test waits
// for RSA keys to be made).
func (e *e2e) faultServer() (store.Server, string) {
	e.T.Helper()
	srv, token := e.LiveServer("production")
	if _, err := e.Store.CreateDomain(store.Domain{AccountID: srv.AccountID, Name: "example.com"}, time.Now()); err != nil {
		e.T.Fatal(err)
	}
	return srv, token
}

// faultConfig is a relay with short timeouts, so that stalls end in a
// moment, and no reuse of sessions unless a test asks for it.
func (e *e2e) faultConfig(adjust func(*relay.MXConfig)) relay.WorkerConfig {
	cfg := e.RelayConfig()
	cfg.MX = e.MXDeliverer(func(c *relay.MXConfig) {
		c.ConnectTimeout, c.CommandTimeout, c.DataTimeout = 2*time.Second, 300*time.Millisecond, 500*time.Millisecond
		c.ReuseTimeout = 0
		if adjust != nil {
			adjust(c)
		}
	})
	cfg.RetryBase = time.Hour // one attempt is what these tests look at
	return cfg
}

// firstEvent sends one message to alice@example.net and returns its
// first event, with the type of the bounce it filed, if any.
func (e *e2e) firstEvent(srvID int64, token string) (store.Event, string) {
	e.T.Helper()
	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "Faults"))
	var ev store.Event
	stack.WaitFor(e.T, "an event", func() bool {
		evs := e.Events(srvID, id)
		if len(evs) == 0 {
			return false
		}
		ev = evs[0]
		return true
	})
	if ev.Type != store.EventBounced {
		return ev, ""
	}
	b, err := e.Store.Bounce(srvID, ev.BounceID)
	if err != nil {
		e.T.Fatal(err)
	}
	return ev, b.Type
}

// 4xx and 5xx at every stage of the session. A refusal before MAIL is
// about the host (HostError: Transient, even a 5xx); from MAIL on, a
// 4xx is Transient and a 5xx bounces with the type its codes name.
func TestFaultRefusalAtEachStage(t *testing.T) {
	tests := []struct {
		stage, reply  string
		event, bounce string
	}{
		{"greeting", "421 4.3.2 Service shutting down", store.EventTransient, ""},
		{"greeting", "554 5.3.2 No SMTP service here", store.EventTransient, ""},
		{"EHLO", "451 4.3.0 Try later", store.EventTransient, ""},
		{"EHLO", "554 5.7.1 Go away", store.EventTransient, ""},
		{"MAIL", "451 4.3.0 Local error", store.EventTransient, ""},
		{"MAIL", "550 5.7.1 Sender blocked by policy", store.EventBounced, "Blocked"},
		{"RCPT", "450 4.2.0 Greylisted", store.EventTransient, ""},
		{"RCPT", "550 5.1.1 No such user", store.EventBounced, "HardBounce"},
		{"DATA", "451 4.3.0 Not now", store.EventTransient, ""},
		{"DATA", "554 5.5.0 Transaction failed", store.EventBounced, "SoftBounce"},
		{".", "452 4.3.1 Insufficient storage", store.EventTransient, ""},
		{".", "552 5.3.4 Message too big", store.EventBounced, "SoftBounce"},
		{".", "550 5.7.1 Message rejected as spam", store.EventBounced, "Blocked"},
	}
	for _, tt := range tests {
		t.Run(tt.stage+" "+tt.reply[:3], func(t *testing.T) {
			e := newE2E(t)
			srv, token := e.faultServer()
			p := e.rawPeer(stack.Loopbacks[0], script{tt.stage: tt.reply})
			e.Route("example.net", stack.Loopbacks[0])
			_, stop := e.StartRelay(e.faultConfig(nil))
			defer stop()
			ev, bounce := e.firstEvent(srv.ID, token)
			if ev.Type != tt.event || bounce != tt.bounce {
				t.Fatalf("event %s (bounce %q), want %s (%q); details %+v", ev.Type, bounce, tt.event, tt.bounce, ev.Details)
			}
			if text := tt.reply[len("ddd d.d.d "):]; !strings.Contains(ev.Details.DeliveryMessage, text) {
				t.Errorf("DeliveryMessage %q does not quote the reply %q", ev.Details.DeliveryMessage, tt.reply)
			}
			if p.Messages() != 0 {
				t.Errorf("the peer took %d messages", p.Messages())
			}
		})
	}
}

// Connections that fail: refused, reset in the middle of DATA, reset at
// the greeting, a hang-up without a reply. Each is Transient.
func TestFaultBrokenConnections(t *testing.T) {
	tests := []struct {
		name string
		sc   script // nil: nothing listens
		want string // in DeliveryMessage
	}{
		{"connection refused", nil, "refused"},
		{"reset mid-DATA", script{"in-data": "reset"}, "reset"},
		{"closed mid-DATA", script{"in-data": "close"}, ""},
		{"reset at greeting", script{"greeting": "reset"}, ""},
		{"closed after RCPT", script{"RCPT": "close"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2E(t)
			srv, token := e.faultServer()
			if tt.sc != nil {
				e.rawPeer(stack.Loopbacks[0], tt.sc)
			}
			e.Route("example.net", stack.Loopbacks[0])
			_, stop := e.StartRelay(e.faultConfig(nil))
			defer stop()
			ev, _ := e.firstEvent(srv.ID, token)
			if ev.Type != store.EventTransient || !strings.Contains(ev.Details.DeliveryMessage, tt.want) {
				t.Fatalf("event %s %q, want Transient mentioning %q", ev.Type, ev.Details.DeliveryMessage, tt.want)
			}
		})
	}
}

// A peer that stops answering, at any stage, is given up on when the
// timeout for that stage fires (here short ones; the peer would stall
// for the whole test): the event is Transient.
func TestFaultStall(t *testing.T) {
	for _, stage := range []string{"greeting", "EHLO", "MAIL", "RCPT", "DATA", "in-data", "."} {
		t.Run(stage, func(t *testing.T) {
			e := newE2E(t)
			srv, token := e.faultServer()
			e.rawPeer(stack.Loopbacks[0], script{stage: "stall"})
			e.Route("example.net", stack.Loopbacks[0])
			_, stop := e.StartRelay(e.faultConfig(nil))
			defer stop()
			ev, _ := e.firstEvent(srv.ID, token)
			if ev.Type != store.EventTransient || !strings.Contains(strings.ToLower(ev.Details.DeliveryMessage), "timeout") {
				t.Fatalf("event %s %q, want Transient for a timeout", ev.Type, ev.Details.DeliveryMessage)
			}
		})
	}
}

// A peer that takes the message and hangs up without waiting for QUIT
// delivered it; with sessions kept for reuse, the next message finds the
// kept session gone and opens a new one.
func TestFaultCloseWithoutQuit(t *testing.T) {
	e := newE2E(t)
	srv, token := e.faultServer()
	p := e.rawPeer(stack.Loopbacks[0], script{"after.": "close"})
	e.Route("example.net", stack.Loopbacks[0])
	_, stop := e.StartRelay(e.faultConfig(func(c *relay.MXConfig) { c.ReuseTimeout = 5 * time.Second }))
	defer stop()
	for i := range 3 {
		id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "No QUIT"))
		evs := e.WaitFinal(srv.ID, id)
		if len(evs) != 1 || evs[0].Type != store.EventDelivered {
			t.Fatalf("message %d: events %+v, want Delivered", i, evs)
		}
	}
	if p.Messages() != 3 {
		t.Errorf("the peer took %d messages, want 3", p.Messages())
	}
}

// STARTTLS offered but the handshake fails: with TLSFallback the message
// goes in plaintext to the same server (Delivered, no TLS); without it,
// the server is not used (Transient).
func TestFaultTLSHandshakeFailure(t *testing.T) {
	for _, fallback := range []bool{true, false} {
		name := map[bool]string{true: "fallback", false: "no fallback"}[fallback]
		t.Run(name, func(t *testing.T) {
			e := newE2E(t)
			srv, token := e.faultServer()
			p := e.Peer(stack.Loopbacks[0], smtptest.Options{BrokenTLS: true})
			e.Route("example.net", stack.Loopbacks[0])
			_, stop := e.StartRelay(e.faultConfig(func(c *relay.MXConfig) {
				c.TLSFallback = fallback
				c.CommandTimeout = 5 * time.Second
			}))
			defer stop()
			ev, _ := e.firstEvent(srv.ID, token)
			switch {
			case fallback && (ev.Type != store.EventDelivered || ev.Details.TLS != "" || len(p.Messages()) != 1):
				t.Fatalf("event %s, TLS %q, %d messages; want Delivered in plaintext", ev.Type, ev.Details.TLS, len(p.Messages()))
			case !fallback && (ev.Type != store.EventTransient || !strings.Contains(ev.Details.DeliveryMessage, "TLS")):
				t.Fatalf("event %s %q, want Transient for the TLS failure", ev.Type, ev.Details.DeliveryMessage)
			}
		})
	}
}

// A peer that sends a reply line of 2 MB, or a reply that never ends,
// is cut off: Transient, at once rather than after the command timeout,
// and without buffering the reply. go-smtp's client bounds each line it
// reads (2000 bytes), but neither the number of lines of one reply nor
// the STARTTLS reply, which the relay reads itself with net/textproto:
// before the relay's bound (boundedConn), an endless reply was read until
// the timeout, growing the client's buffer all along.
func TestFaultReplyLineTooLong(t *testing.T) {
	huge := "451 4.3.0 " + strings.Repeat("x", 2<<20)
	for _, tt := range []struct {
		name string
		sc   script
		want string
	}{
		{"2 MB at MAIL", script{"MAIL": huge}, "too long a line"},
		{"2 MB at greeting", script{"greeting": huge}, "too long a line"},
		{"2 MB at EHLO", script{"EHLO": huge}, "too long a line"},
		{"2 MB at end of data", script{".": huge}, "too long a line"},
		{"2 MB reply to STARTTLS", script{"EHLO": "250-raw.test\r\n250 STARTTLS", "STARTTLS": "220 " + huge[4:]}, "reply exceeds"},
		{"endless reply at greeting", script{"greeting": "flood"}, "reply exceeds"},
		{"endless reply at EHLO", script{"EHLO": "flood"}, "reply exceeds"},
		{"endless reply at RCPT", script{"RCPT": "flood"}, "reply exceeds"},
		{"endless reply to STARTTLS", script{"EHLO": "250-raw.test\r\n250 STARTTLS", "STARTTLS": "flood"}, "reply exceeds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2E(t)
			srv, token := e.faultServer()
			e.rawPeer(stack.Loopbacks[0], tt.sc)
			e.Route("example.net", stack.Loopbacks[0])
			_, stop := e.StartRelay(e.faultConfig(func(c *relay.MXConfig) {
				c.CommandTimeout, c.DataTimeout = 20*time.Second, 20*time.Second
			}))
			defer stop()
			start := time.Now()
			ev, _ := e.firstEvent(srv.ID, token)
			if ev.Type != store.EventTransient || !strings.Contains(ev.Details.DeliveryMessage, tt.want) {
				t.Fatalf("event %s %.300q, want Transient mentioning %q", ev.Type, ev.Details.DeliveryMessage, tt.want)
			}
			if len(ev.Details.DeliveryMessage) > 4096 {
				t.Errorf("DeliveryMessage of %d bytes: the reply was kept", len(ev.Details.DeliveryMessage))
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v: the reply was read until a timeout", d)
			}
		})
	}
}

// Stuck peers do not exhaust the worker pool: with 4 workers and at most
// 2 sessions per destination domain, messages to a domain whose server
// stalls hold at most 2 workers, and a message to another domain is
// delivered while they still stall.
func TestFaultStuckPeersDoNotExhaustWorkers(t *testing.T) {
	stuckPeers(t, 2)
}

// TestStuckDomainDoesNotExhaustWorkers is the regression test of what the
// case above found with more stuck messages than the domain cap (4
// here): the scheduler claimed every due entry while workers were free,
// and an attempt waited for its domain slot inside its worker slot, so
// the 2 messages waiting behind the stalled sessions held the other 2
// workers and the other domain's message waited for the stalls to time
// out. Now an attempt whose destination is at its cap goes back to the
// queue (store.Defer, no attempt counted) instead of waiting.
func TestStuckDomainDoesNotExhaustWorkers(t *testing.T) {
	stuckPeers(t, 4)
}

func stuckPeers(t *testing.T, stuckMessages int) {
	e := newE2E(t)
	srv, token := e.faultServer()
	stuck := e.rawPeer(stack.Loopbacks[0], script{"MAIL": "stall"})
	good := e.Peer(stack.Loopbacks[1], smtptest.Options{})
	e.Route("stuck.example", stack.Loopbacks[0])
	e.Route("example.net", stack.Loopbacks[1])
	cfg := e.faultConfig(func(c *relay.MXConfig) { c.CommandTimeout = 30 * time.Second })
	cfg.Workers, cfg.PerServer, cfg.PerDomain = 4, 4, 2
	_, stop := e.StartRelay(cfg)
	defer stop()

	var stuckIDs []string
	for i := range stuckMessages {
		stuckIDs = append(stuckIDs, e.Send(token, "app@example.com", []string{"user@stuck.example"}, testBody("app@example.com", "user@stuck.example", fmt.Sprint("stuck ", i))))
	}
	stack.WaitFor(t, "two sessions with the stuck peer", func() bool {
		stuck.mu.Lock()
		defer stuck.mu.Unlock()
		return stuck.conns >= 2
	})
	time.Sleep(100 * time.Millisecond) // let the scheduler claim what it will
	start := time.Now()
	id := e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", "other domain"))
	var evs []store.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(evs) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		evs = e.Events(srv.ID, id)
	}
	if len(evs) != 1 || evs[0].Type != store.EventDelivered || len(good.Messages()) != 1 {
		t.Fatalf("after %v: events %+v, want Delivered while the stalls last", time.Since(start), evs)
	}
	for _, sid := range stuckIDs {
		if evs := e.Events(srv.ID, sid); len(evs) != 0 {
			t.Errorf("stuck message %s already has events %+v: the stall did not hold", sid, evs)
		}
	}
	q, err := e.Store.Queue(100)
	if err != nil {
		t.Fatal(err)
	}
	for _, qe := range q {
		if qe.Attempts != 0 {
			t.Errorf("queue entry %s has %d attempts: waiting for a domain slot counted as one", qe.MessageID, qe.Attempts)
		}
	}
	stuck.mu.Lock()
	if stuck.conns > 2 {
		t.Errorf("%d sessions with the stuck domain, over PerDomain 2", stuck.conns)
	}
	stuck.mu.Unlock()
	stop()
}

// deferCounter counts the entries the relay claimed and then handed back
// because their destination was full.
type deferCounter struct {
	relay.Store
	n atomic.Int32
}

func (d *deferCounter) Defer(e store.QueueEntry, due time.Time) error {
	d.n.Add(1)
	return d.Store.Defer(e, due)
}

// TestFullDestinationEntriesStayQueued: entries for a destination at its
// cap are not claimed at all (a claim and a Defer would cost two commits
// every busyDefer); they wait, unleased and with no attempt, and go as
// soon as a slot frees.
func TestFullDestinationEntriesStayQueued(t *testing.T) {
	e := newE2E(t)
	_, token := e.faultServer()
	stuck := e.rawPeer(stack.Loopbacks[0], script{"MAIL": "stall"})
	e.Route("stuck.example", stack.Loopbacks[0])
	cfg := e.faultConfig(func(c *relay.MXConfig) { c.CommandTimeout = 30 * time.Second })
	cfg.Workers, cfg.PerServer, cfg.PerDomain = 4, 4, 2
	counter := &deferCounter{Store: cfg.Store}
	cfg.Store = counter
	_, stop := e.StartRelay(cfg)
	defer stop()

	for i := range 4 {
		e.Send(token, "app@example.com", []string{"user@stuck.example"}, testBody("app@example.com", "user@stuck.example", fmt.Sprint("stuck ", i)))
	}
	stack.WaitFor(t, "two sessions with the stuck peer", func() bool {
		stuck.mu.Lock()
		defer stuck.mu.Unlock()
		return stuck.conns >= 2
	})
	time.Sleep(3 * 250 * time.Millisecond) // several busyDefer periods
	if n := counter.n.Load(); n != 0 {
		t.Errorf("%d entries were claimed and deferred; want them left in the queue", n)
	}
	q, err := e.Store.Queue(100)
	if err != nil {
		t.Fatal(err)
	}
	leased := 0
	for _, qe := range q {
		if qe.Leased {
			leased++
		}
		if qe.Attempts != 0 {
			t.Errorf("entry %s has %d attempts", qe.MessageID, qe.Attempts)
		}
	}
	if len(q) != 4 || leased != 2 {
		t.Errorf("queue holds %d entries, %d leased; want 4, 2 (PerDomain 2)", len(q), leased)
	}
	stop()
}

// received reports whether the peer has received the command verb.
func (p *rawPeer) received(verb string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.verbs, verb)
}

// TestRSETEndsWithTheContext: after a transaction that leaves MAIL open
// (every recipient refused), a kept session gets RSET; a server silent
// at RSET holds the delivery only until its context ends, not for
// command-timeout (a shutdown would wait that long).
func TestRSETEndsWithTheContext(t *testing.T) {
	e := newE2E(t)
	p := e.rawPeer(stack.Loopbacks[0], script{"RCPT": "550 5.1.1 No such user", "RSET": "stall"})
	e.Route("example.net", stack.Loopbacks[0])
	d := e.MXDeliverer(func(c *relay.MXConfig) { c.CommandTimeout = time.Minute })
	defer d.CloseIdle()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for !p.received("RSET") && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	res, err := d.DeliverDomain(ctx, "example.net",
		relay.Envelope{From: "app@example.com", To: []string{"nobody@example.net"}},
		relay.Message{Raw: []byte(testBody("app@example.com", "nobody@example.net", "RSET"))})
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the delivery took %s: RSET was not cut short when the context ended", took)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recipients) != 1 || res.Recipients[0].Reply.Code != 550 {
		t.Fatalf("result %+v, want the recipient's 550", res.Recipients)
	}
}
