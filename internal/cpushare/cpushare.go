// Package cpushare lets work a client waits on go before background work
// when both want the CPU: the intake's messages before the relay's
// signatures.
package cpushare

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// Share is told when foreground work starts and ends, and admits
// background work: as many at once as there are CPUs while no foreground
// work is in progress, one at a time while some is, and that one only
// after the foreground has had the CPU to itself for up to the maximum
// wait given to New.
//
// Go's scheduler has no priorities: a goroutine that becomes runnable
// waits behind every runnable goroutine on its processor. With the
// relay's deliveries each signing (about a millisecond of RSA at a time)
// on every core, an intake session woken by its commit waited behind
// them, and the intake, which needs half the machine at half its peak,
// fell behind its offered rate. Holding the relay to one core while
// clients wait leaves the other to them.
type Share struct {
	foreground atomic.Int64
	lastDone   atomic.Int64  // when foreground work last ended, UnixNano
	all        chan struct{} // one token per CPU
	busy       chan struct{} // one token: background work while the foreground runs
	maxWait    time.Duration
	now        func() time.Time
}

// DefaultMaxWait bounds how long background work waits for the foreground
// to finish before it runs anyway (on one core): the relay slows down
// under a flood of submissions, and never stops.
const DefaultMaxWait = 2 * time.Millisecond

// New returns a Share for procs CPUs (GOMAXPROCS if procs <= 0).
func New(procs int, maxWait time.Duration) *Share {
	if procs <= 0 {
		procs = runtime.GOMAXPROCS(0)
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	return &Share{all: make(chan struct{}, procs), busy: make(chan struct{}, 1), maxWait: maxWait, now: time.Now}
}

// Foreground marks work a client waits on; call the function it returns
// when that work is done.
func (s *Share) Foreground() (done func()) {
	s.foreground.Add(1)
	return func() {
		s.lastDone.Store(s.now().UnixNano())
		s.foreground.Add(-1)
	}
}

// busyFor is how long after foreground work ends Busy still says so: a
// client sending a stream of messages has a gap between one reply and the
// next DATA that is no time to start background work.
const busyFor = 10 * time.Millisecond

// Busy reports whether foreground work is in progress or ended less than
// busyFor ago: whether background work should hold back.
func (s *Share) Busy() bool {
	return s.foreground.Load() > 0 || s.now().Sub(time.Unix(0, s.lastDone.Load())) < busyFor
}

// Background waits until background work may run and returns the function
// that ends it; or ctx's error.
func (s *Share) Background(ctx context.Context) (release func(), err error) {
	var busy bool
	if s.foreground.Load() > 0 {
		select {
		case s.busy <- struct{}{}:
			busy = true
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// The foreground first, for a while. Polling is cheap here: one
		// goroutine at most (the holder of busy) does it.
		deadline := time.Now().Add(s.maxWait)
		for s.foreground.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(100 * time.Microsecond)
		}
		if err := ctx.Err(); err != nil {
			<-s.busy
			return nil, err
		}
	}
	select {
	case s.all <- struct{}{}:
	case <-ctx.Done():
		if busy {
			<-s.busy
		}
		return nil, ctx.Err()
	}
	return func() {
		<-s.all
		if busy {
			<-s.busy
		}
	}, nil
}
