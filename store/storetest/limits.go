package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testSentSinceAndSentOn(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Date(2026, 3, 2, 0, 1, 30, 0, time.UTC)
	enqueueN(t, s, a.ID, 2, now.Add(-2*time.Minute)) // 23:59:30 the day before
	enqueueN(t, s, a.ID, 3, now.Add(-50*time.Second))
	enqueueN(t, s, a.ID, 4, now.Add(-10*time.Second))
	enqueueN(t, s, b.ID, 7, now)
	since := now.Add(-time.Minute)
	for _, c := range []struct {
		limit, want int
	}{{0, 7}, {100, 7}, {7, 7}, {5, 5}, {1, 1}} {
		if n, err := s.SentSince(a.ID, since, c.limit); err != nil || n != c.want {
			t.Errorf("SentSince(limit %d) = %d, %v; want %d", c.limit, n, err, c.want)
		}
	}
	if n, _ := s.SentSince(a.ID, now.Add(-20*time.Second), 0); n != 4 {
		t.Errorf("last 20s: %d, want 4", n)
	}
	if n, _ := s.SentSince(b.ID, since, 0); n != 7 {
		t.Errorf("B: %d, want 7", n)
	}
	if _, err := s.SentSince(99, since, 0); err == nil {
		t.Error("missing server: no error")
	}
	// A message of each stream and tag counts toward the day.
	m := NewMessage(a.ID, now)
	m.Tag, m.MessageStream = "", "broadcast"
	if err := Enqueue(s, m, []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		day  time.Time
		want int64
	}{{now, 8}, {now.Add(-time.Hour), 2}, {now.Add(24 * time.Hour), 0}} {
		if n, err := s.SentOn(a.ID, c.day); err != nil || n != c.want {
			t.Errorf("SentOn(%s) = %d, %v; want %d", c.day, n, err, c.want)
		}
	}
	// Both survive a restart: they are read from what the store keeps.
	s2 := h.Reopen(t, s)
	if n, _ := s2.SentSince(a.ID, since, 0); n != 8 {
		t.Errorf("after reopening: SentSince %d, want 8", n)
	}
	if n, _ := s2.SentOn(a.ID, now); n != 8 {
		t.Errorf("after reopening: SentOn %d, want 8", n)
	}
}

// A server's limits are counted in the transaction that files a message:
// of concurrent enqueues past the limit, exactly as many as it allows
// succeed, the others get a *store.LimitError.
func testEnqueueHoldsLimits(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	for _, c := range []struct {
		name   string
		limits store.Limits
		perDay bool
	}{{"rate", store.Limits{PerMinute: 5}, false}, {"quota", store.Limits{PerDay: 5}, true}} {
		srv := secondServer(t, s, acct.ID, c.name)
		srv.RateLimitPerMinute, srv.DailyQuota = c.limits.PerMinute, c.limits.PerDay
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.Enqueue(store.Accept(srv, *NewMessage(srv.ID, time.Now()), []byte("x")))
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			var le *store.LimitError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &le) && le.PerDay == c.perDay && le.Max == 5:
			default:
				t.Errorf("%s: %v, want nil or a LimitError", c.name, err)
			}
		}
		if ok != 5 {
			t.Errorf("%s: %d of 12 concurrent messages accepted under a limit of 5", c.name, ok)
		}
	}
}
