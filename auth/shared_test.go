package auth

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store/postgres"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Failures spread over two nodes sharing a store count together: two on
// node A and one on node B shut the address out on both, and nowhere
// else.
func TestSharedThrottleCountsAcrossNodes(t *testing.T) {
	dsn := pgtest.New(t)
	var nodes []*SharedThrottle
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for range 2 {
		st, err := postgres.Open(context.Background(), dsn, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		nodes = append(nodes, NewSharedThrottle(ThrottleConfig{Failures: 3, Window: time.Minute, Now: func() time.Time { return now }}, st))
	}
	a, b := nodes[0], nodes[1]
	if a.Fail("192.0.2.7") || a.Fail("192.0.2.7") {
		t.Fatal("shut out after two failures of three")
	}
	if blocked, _ := b.Blocked("192.0.2.7"); blocked {
		t.Fatal("node B shut the address out before its third failure")
	}
	if !b.Fail("192.0.2.7") {
		t.Fatal("the third failure, on node B, did not shut the address out")
	}
	if blocked, until := a.Blocked("192.0.2.7"); !blocked || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("node A: blocked %v until %v", blocked, until)
	}
	if blocked, _ := a.Blocked("192.0.2.8"); blocked {
		t.Fatal("another address is shut out")
	}
	now = now.Add(time.Minute + time.Second)
	if blocked, _ := a.Blocked("192.0.2.7"); blocked {
		t.Fatal("still shut out after the window")
	}
	// Failures older than the window are forgotten.
	if a.Fail("192.0.2.9") || b.Fail("192.0.2.9") {
		t.Fatal("shut out early")
	}
	now = now.Add(2 * time.Minute)
	if a.Fail("192.0.2.9") {
		t.Fatal("failures older than the window still counted")
	}
}
