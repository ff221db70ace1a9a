package smtpd

import (
	"errors"
	"io"
	"sync"
	"time"
)

// inflight caps the bytes of message data held in memory at once, across
// sessions. A message is read whole into memory before it is stored, so
// without a cap 1,000 sessions of 10 MiB messages would want 10 GiB. A
// session reserves its share when DATA begins (the SIZE declared in MAIL
// FROM, else max-message-size), waits up to Config.InflightWait for room,
// keeps what the message holds once it is read, and releases that once
// the message is stored or refused.
type inflight struct {
	limit int64

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed and replaced at every release
}

func newInflight(limit int64) *inflight {
	return &inflight{limit: limit, freed: make(chan struct{})}
}

// acquire reserves n bytes (at most the whole cap), waiting up to wait for
// room; it returns what it reserved, or 0 when there was no room in time.
func (f *inflight) acquire(n int64, wait time.Duration) int64 {
	n = min(n, f.limit)
	if n <= 0 {
		return 0
	}
	var timeout <-chan time.Time
	for {
		f.mu.Lock()
		if f.used+n <= f.limit {
			f.used += n
			f.mu.Unlock()
			return n
		}
		freed := f.freed
		f.mu.Unlock()
		if timeout == nil {
			if wait <= 0 {
				return 0
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-freed:
		case <-timeout:
			return 0
		}
	}
}

func (f *inflight) release(n int64) {
	if n <= 0 {
		return
	}
	f.mu.Lock()
	f.used -= n
	close(f.freed)
	f.freed = make(chan struct{})
	f.mu.Unlock()
}

// Used is the bytes reserved now (for tests).
func (f *inflight) Used() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used
}

// errInflight ends a read whose data outgrew its reservation when no more
// room could be had.
var errInflight = errors.New("smtpd: in-flight data cap reached")

// reservedReader reads a message within its reservation, reserving more
// (in steps of at least 1 MiB, up to max) when a client sends more than
// the SIZE it declared.
type reservedReader struct {
	r    io.Reader
	f    *inflight
	wait time.Duration
	max  int64 // max-message-size: go-smtp refuses beyond it anyway
	held int64
	read int64
}

// keep gives back all but n bytes of the reservation: once the message is
// read, what it holds until its reply is known.
func (rr *reservedReader) keep(n int64) {
	if n < rr.held {
		rr.f.release(rr.held - n)
		rr.held = n
	}
}

func (rr *reservedReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.read += int64(n)
	for rr.read > rr.held && rr.held < rr.max {
		more := min(max(rr.read-rr.held, 1<<20), rr.max-rr.held)
		got := rr.f.acquire(more, rr.wait)
		if got == 0 {
			return n, errInflight
		}
		rr.held += got
	}
	return n, err
}
