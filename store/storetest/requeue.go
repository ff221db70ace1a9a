package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testDeferReturnsEntryUncounted(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	now := time.Now()
	ids := enqueueN(t, s, srv.ID, 1, now, "a@example.net", "b@example.org")
	got, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %+v %v", got, err)
	}
	later := now.Add(time.Second)
	if err := s.Defer(got[0], later); err != nil {
		t.Fatal(err)
	}
	q, _ := s.Queue(10)
	if len(q) != 1 || q[0].Leased || q[0].Attempts != 0 || !q[0].Due.Equal(later) || len(q[0].Pending) != 2 {
		t.Fatalf("deferred entry %+v", q)
	}
	if evs, _ := s.Events(srv.ID, ids[0]); len(evs) != 0 {
		t.Fatalf("events %+v", evs)
	}
	if m, _ := s.Message(srv.ID, ids[0]); m.Status != store.StatusQueued {
		t.Fatalf("status %q", m.Status)
	}
	if again, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1}); len(again) != 0 {
		t.Fatalf("claimed before due: %+v", again)
	}
	again, _ := s.Claim(store.ClaimRequest{Now: later, Lease: time.Minute, Max: 1})
	if len(again) != 1 || again[0].MessageID != ids[0] || again[0].Attempts != 0 {
		t.Fatalf("claim after due: %+v", again)
	}
	// The stale copy (its lease was replaced by the new claim) is refused.
	if err := s.Defer(got[0], later); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("defer of a stale entry: %v", err)
	}
	selfCheck(t, s)
}
