package relay_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

// countingStore counts the Delivered outcomes the store has recorded.
type countingStore struct {
	relay.Store
	delivered atomic.Int64
	done      chan struct{}
	want      int64
}

func (s *countingStore) RecordAttempt(a store.Attempt) error {
	if err := s.Store.RecordAttempt(a); err != nil {
		return err
	}
	n := int64(0)
	for _, o := range a.Outcomes {
		if o.Type == store.EventDelivered {
			n++
		}
	}
	if s.delivered.Add(n) >= s.want && n > 0 {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	return nil
}

// BenchmarkEndToEnd measures messages per second through the whole of
// Postern: accepted over SMTP with AUTH PLAIN from 32 client sessions
// (2 KB messages, one recipient, committed to disk before the 250),
// signed with Ed25519 and RSA-2048, delivered over SMTP to a sink on
// loopback, and the Delivered event committed; timed from the first send
// to the last event. The relay runs with the default caps.
//
//	go test -run '^$' -bench BenchmarkEndToEnd -benchtime 5000x ./relay/
func BenchmarkEndToEnd(b *testing.B) {
	const sessions = 32
	var commits, writes, commitNanos atomic.Int64
	e := newE2E(b, bolt.Options{OnCommit: func(n int, took time.Duration) {
		commits.Add(1)
		writes.Add(int64(n))
		commitNanos.Add(int64(took))
	}})
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	sink := e.Peer(stack.Loopbacks[0], smtptest.Options{Sink: true})
	e.Route("example.net", stack.Loopbacks[0])

	body := "From: App <app@example.com>\r\nTo: alice@example.net\r\nSubject: benchmark\r\nMessage-ID: <x@example.com>\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", 2048/78)
	cs := &countingStore{Store: e.Store, done: make(chan struct{}), want: int64(b.N)}
	cfg := e.RelayConfig()
	cfg.Store = cs
	cfg.RetryBase = 0 // the defaults: nothing should be retried
	cfg.Rand = nil
	_, stop := e.StartRelay(cfg)

	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		c, err := stack.DialAuth(e.SMTP, token)
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	b.SetBytes(int64(len(body)))
	commits.Store(0)
	writes.Store(0)
	commitNanos.Store(0)
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := stack.Submit(c, "app@example.com", []string{"alice@example.net"}, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	select {
	case <-cs.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d delivered", cs.delivered.Load(), b.N)
	}
	took := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/took.Seconds(), "msgs/s")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	if n := commits.Load(); n > 0 {
		b.ReportMetric(float64(writes.Load())/float64(n), "writes/commit")
		b.ReportMetric(float64(commitNanos.Load())/float64(n)/1e6, "ms/commit")
		b.ReportMetric(float64(n)/took.Seconds(), "commits/s")
	}
	for _, c := range clients {
		c.Quit()
	}
	stop()
	if got := sink.Received(); got < b.N {
		b.Errorf("the sink received %d messages, want %d", got, b.N)
	}
}

// BenchmarkDeliverQueued measures the relay alone: messages already in
// the queue (2 KB, one recipient), signed with Ed25519 and RSA-2048 and
// delivered to a sink on loopback, each Delivered event committed.
//
//	go test -run '^$' -bench BenchmarkDeliverQueued -benchtime 5000x ./relay/
func BenchmarkDeliverQueued(b *testing.B) {
	e := newE2E(b)
	srv, _ := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	e.Peer(stack.Loopbacks[0], smtptest.Options{Sink: true})
	e.Route("example.net", stack.Loopbacks[0])
	body := []byte("From: App <app@example.com>\r\nTo: alice@example.net\r\nSubject: benchmark\r\nMessage-ID: <x@example.com>\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", 2048/78))
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				m := &store.Message{MessageID: store.NewMessageID(), ServerID: srv.ID, EnvelopeFrom: "app@example.com",
					Recipients: []string{"alice@example.net"}, MessageStream: "outbound", ReceivedAt: time.Now(), Status: store.StatusQueued}
				if err := storetest.Enqueue(e.Store, m, body); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cs := &countingStore{Store: e.Store, done: make(chan struct{}), want: int64(b.N)}
	cfg := e.RelayConfig()
	cfg.Store = cs
	cfg.RetryBase, cfg.Rand = 0, nil
	b.ResetTimer()
	start := time.Now()
	e.StartRelay(cfg)
	select {
	case <-cs.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d delivered", cs.delivered.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
