package relay_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/cpushare"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
)

// While clients wait on the intake, the relay keeps four deliveries going
// and signs one message at a time; once they are done, it takes up its
// full concurrency again, and every message is delivered, signed.
func TestBusyIntakeHoldsTheRelayBack(t *testing.T) {
	e := newE2E(t)
	srv, token := e.LiveServer("production")
	e.SendingDomain(srv.AccountID, "example.com")
	var inData, most atomic.Int32
	release := make(chan struct{})
	p := e.Peer(stack.Loopbacks[0], smtptest.Options{Data: func([]byte) error {
		n := inData.Add(1)
		defer inData.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return nil
	}})
	e.Route("example.net", stack.Loopbacks[0])
	var ids []string
	for i := range 12 {
		ids = append(ids, e.Send(token, "app@example.com", []string{"alice@example.net"}, testBody("app@example.com", "alice@example.net", fmt.Sprint("busy ", i))))
	}

	share := cpushare.New(2, time.Millisecond)
	intakeDone := share.Foreground() // a client waits on the intake
	cfg := e.RelayConfig()
	cfg.Workers, cfg.PerServer, cfg.PerDomain, cfg.CPU = 16, 16, 16, share
	_, stop := e.StartRelay(cfg)
	defer stop()
	stack.WaitFor(t, "four deliveries in DATA", func() bool { return inData.Load() == 4 })
	time.Sleep(100 * time.Millisecond) // time for the relay to start more, were it to
	if n := most.Load(); n != 4 {
		t.Fatalf("%d deliveries at once while the intake was busy, want 4", n)
	}

	intakeDone()
	stack.WaitFor(t, "the other eight deliveries to start once the intake is idle", func() bool { return inData.Load() == 12 })
	close(release)
	for _, id := range ids {
		if evs := e.WaitFinal(srv.ID, id); len(evs) != 1 || evs[0].Type != store.EventDelivered {
			t.Errorf("%s: events %+v", id, evs)
		}
	}
	for _, m := range p.Messages() {
		e.checkSignatures(t, m.Data)
	}
}
