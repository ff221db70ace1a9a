package storetest

import (
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testQueueStats(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
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
