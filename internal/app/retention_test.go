package app

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

// The runner purges at start, then at each interval, with the time it is
// given, and stops with its context.
func TestRunRetention(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	received := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var ids []string
	for range 3 {
		m := &store.Message{MessageID: store.NewMessageID(), ServerID: inst.ServerID, Recipients: []string{"a@example.net"},
			MessageStream: "outbound", ReceivedAt: received, Status: store.StatusSent}
		if err := storetest.Enqueue(st, m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	// Enqueue queues them: deliver them, so that they may be purged.
	entries, err := st.Claim(store.ClaimRequest{Now: received, Lease: time.Minute, Max: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := st.RecordAttempt(store.Attempt{Entry: e, At: received, Outcomes: []store.Outcome{{Recipient: "a@example.net", Type: store.EventDelivered}}}); err != nil {
			t.Fatal(err)
		}
	}

	// A console session last seen at received is idle for a day when
	// the runner starts; one seen a day later is not.
	owner, err := st.UserByEmail(auth.OwnerEmail)
	if err != nil {
		t.Fatal(err)
	}
	for hash, seen := range map[string]time.Time{"idle": received, "active": received.Add(23 * time.Hour)} {
		if err := st.CreateSession(store.Session{Hash: hash, UserID: owner.ID, AccountID: inst.AccountID, CreatedAt: received, LastSeen: seen}); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	clock := received.Add(24 * time.Hour) // within the 45 days
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	rec := &countingPurger{st: st}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runRetention(ctx, rec, 20*time.Millisecond, now, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	waitUntil(t, "a first purge", func() bool { return rec.calls() >= 1 })
	waitUntil(t, "the idle session removed", func() bool { _, err := st.Session("idle"); return errors.Is(err, store.ErrNotFound) })
	if _, err := st.Session("active"); err != nil {
		t.Errorf("a session seen an hour ago: %v", err)
	}
	if _, err := st.Message(inst.ServerID, ids[0]); err != nil {
		t.Fatalf("a message within its retention: %v", err)
	}
	mu.Lock()
	clock = received.Add(46 * 24 * time.Hour)
	mu.Unlock()
	waitUntil(t, "the purge of expired messages, logged", func() bool { return strings.Contains(logs.String(), "purged=3") })
	for _, id := range ids {
		if _, err := st.Message(inst.ServerID, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("message %s after the purge: %v", id, err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("runRetention did not stop with its context")
	}
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
}

type countingPurger struct {
	st *bolt.Store
	mu sync.Mutex
	n  int
}

func (p *countingPurger) DeleteSessionsIdleSince(t time.Time) (int, error) {
	return p.st.DeleteSessionsIdleSince(t)
}

func (p *countingPurger) PurgeExpired(ctx context.Context, now time.Time, batch int) (int, error) {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	return p.st.PurgeExpired(ctx, now, batch)
}

func (p *countingPurger) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s within 10s", what)
}
