package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testPurgeExpired(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B") // the default retention, 45 days
	a.RetentionDays = 3
	if err := s.UpdateServer(a); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 20, 12, 0, 0, 0, time.UTC)
	old := now.Add(-10 * 24 * time.Hour)
	recent := now.Add(-2 * 24 * time.Hour)

	enqueue := func(serverID int64, at time.Time, rcpts ...string) string {
		t.Helper()
		m := NewMessage(serverID, at)
		m.Recipients = rcpts
		if err := Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
			t.Fatal(err)
		}
		return m.MessageID
	}
	delivered := enqueue(a.ID, old, "ok@example.net")
	bounced := enqueue(a.ID, old, "soft@example.net", "gone@example.org") // its hard bounce is reactivated
	inactive := enqueue(a.ID, old, "dead@example.org")                    // its hard bounce still holds
	queued := enqueue(a.ID, old, "later@example.net")                     // still being delivered
	kept := enqueue(a.ID, recent, "ok@example.net")                       // within the retention
	others := enqueue(b.ID, old, "ok@example.net")                        // B keeps 45 days
	var extra []string
	for i := 0; i < 7; i++ { // more than a batch
		extra = append(extra, enqueue(a.ID, old.Add(time.Duration(i)*time.Second), "ok@example.net"))
	}

	entries, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Hour, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	var bounceIDs = map[string]int64{}
	for _, e := range entries {
		var outcomes []store.Outcome
		switch e.MessageID {
		case queued:
			continue
		case bounced:
			outcomes = []store.Outcome{
				{Recipient: "soft@example.net", Type: store.EventBounced, Details: store.EventDetails{BounceType: "SoftBounce", BounceTypeCode: 4096}},
				{Recipient: "gone@example.org", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{BounceType: "HardBounce", BounceTypeCode: 1}},
			}
		case inactive:
			outcomes = []store.Outcome{{Recipient: "dead@example.org", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{BounceType: "HardBounce", BounceTypeCode: 1}}}
		default:
			outcomes = []store.Outcome{{Recipient: e.Pending[0], Type: store.EventDelivered}}
		}
		if err := s.RecordAttempt(store.Attempt{Entry: e, At: e.Due.Add(-time.Hour).Add(time.Minute), Outcomes: outcomes}); err != nil {
			t.Fatal(err)
		}
	}
	bres, err := s.Bounces(a.ID, store.BounceQuery{Count: 10})
	bounces := bres.Bounces
	if err != nil || len(bounces) != 3 {
		t.Fatalf("bounces %+v %v", bounces, err)
	}
	for _, bn := range bounces {
		bounceIDs[bn.MessageID+"/"+bn.Email] = bn.ID
	}
	if _, err := s.ActivateBounce(a.ID, bounceIDs[bounced+"/gone@example.org"]); err != nil {
		t.Fatal(err)
	}
	statsBefore, _ := s.Stats(a.ID, store.StatsQuery{})

	n, err := s.PurgeExpired(context.Background(), now, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 + len(extra); n != want {
		t.Errorf("purged %d, want %d", n, want)
	}
	for _, id := range append([]string{delivered, bounced, inactive}, extra...) {
		if _, err := s.Message(a.ID, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("message %s: %v, want not found", id, err)
		}
		if _, err := s.RawMessage(a.ID, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("raw %s: %v, want not found", id, err)
		}
		if evs, err := s.Events(a.ID, id); err != nil || len(evs) != 0 {
			t.Errorf("events of %s: %v %v", id, evs, err)
		}
	}
	for _, id := range []string{queued, kept} {
		if _, err := s.Message(a.ID, id); err != nil {
			t.Errorf("message %s: %v, want kept", id, err)
		}
	}
	if _, err := s.Message(b.ID, others); err != nil {
		t.Errorf("B's message: %v, want kept", err)
	}
	if res, _ := s.SearchMessages(a.ID, store.MessageQuery{}); res.Total != 2 {
		t.Errorf("A has %d messages, want 2", res.Total)
	}
	// Bounces of purged messages are gone, but for the one that keeps its
	// recipient inactive: it is how the recipient is reactivated.
	for _, key := range []string{bounced + "/soft@example.net", bounced + "/gone@example.org"} {
		if _, err := s.Bounce(a.ID, bounceIDs[key]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("bounce %s: %v, want not found", key, err)
		}
	}
	held, err := s.Bounce(a.ID, bounceIDs[inactive+"/dead@example.org"])
	if err != nil || !held.Inactive || held.DumpAvailable {
		t.Errorf("held bounce %+v %v", held, err)
	}
	if r, _ := s.Bounces(a.ID, store.BounceQuery{Count: 10}); r.Total != 1 {
		t.Errorf("%d bounces left, want 1", r.Total)
	}
	// Stats stay.
	if statsAfter, _ := s.Stats(a.ID, store.StatsQuery{}); !reflect.DeepEqual(statsAfter, statsBefore) {
		t.Errorf("stats changed: %+v, were %+v", statsAfter, statsBefore)
	}
	selfCheck(t, s)

	// Nothing more to do, until the queued message is delivered.
	if n, err := s.PurgeExpired(context.Background(), now, 2); n != 0 || err != nil {
		t.Errorf("second run: %d %v", n, err)
	}
	for _, e := range entries {
		if e.MessageID == queued {
			if err := s.RecordAttempt(store.Attempt{Entry: e, At: now, Outcomes: []store.Outcome{{Recipient: "later@example.net", Type: store.EventDelivered}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := s.PurgeExpired(context.Background(), now, 0); n != 1 || err != nil {
		t.Errorf("after delivery: %d %v, want 1", n, err)
	}
	// Time passes: the recent message goes too, and B's at 45 days.
	if n, err := s.PurgeExpired(context.Background(), now.Add(45*24*time.Hour), 0); n != 2 || err != nil {
		t.Errorf("45 days later: %d %v, want 2", n, err)
	}
	selfCheck(t, s)
}

func testPurgeExpiredStopsWithItsContext(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now()
	enqueueN(t, s, a.ID, 3, now.Add(-50*24*time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := s.PurgeExpired(ctx, now, 1); !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("cancelled: %d %v", n, err)
	}
}
