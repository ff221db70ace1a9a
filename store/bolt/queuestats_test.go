package bolt

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func TestQueueStats(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, a := initTest(t, s)
	b := secondServer(t, s, acct.ID, "B")
	secondServer(t, s, acct.ID, "C") // nothing queued: no queue yet
	now := time.Now()
	enqueueN(t, s, a.ID, 3, now.Add(-time.Minute))
	enqueueN(t, s, b.ID, 2, now.Add(time.Hour)) // not due yet

	// A claimed entry is still queued, due when its lease ends.
	if got, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1, Allow: func(id int64) int {
		if id == a.ID {
			return 1
		}
		return 0
	}}); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	stats, err := s.QueueStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 {
		t.Fatalf("stats %+v, want servers %d and %d", stats, a.ID, b.ID)
	}
	if st := stats[0]; st.ServerID != a.ID || st.Depth != 3 || !st.Earliest.Equal(now.Add(-time.Minute)) {
		t.Errorf("server A: %+v, want depth 3, earliest %s", st, now.Add(-time.Minute))
	}
	if st := stats[1]; st.ServerID != b.ID || st.Depth != 2 || !st.Earliest.Equal(now.Add(time.Hour)) {
		t.Errorf("server B: %+v, want depth 2, earliest %s", st, now.Add(time.Hour))
	}
}

func TestPing(t *testing.T) {
	var broken atomic.Bool
	disk := errors.New("disk full")
	s, _ := openTest(t, Options{BeforeCommit: func() error {
		if broken.Load() {
			return disk
		}
		return nil
	}})
	if err := s.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	broken.Store(true)
	if err := s.Ping(); !errors.Is(err, disk) {
		t.Fatalf("ping with failing commits: %v, want %v", err, disk)
	}
	broken.Store(false)
	if err := s.Ping(); err != nil {
		t.Fatalf("ping after recovery: %v", err)
	}
	s.Close()
	if err := s.Ping(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("ping after close: %v, want ErrClosed", err)
	}
}
