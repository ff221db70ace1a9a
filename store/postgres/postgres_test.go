package postgres_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/postgres"
	"github.com/postern/postern/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The whole storage contract, on a schema of its own per test in a
// throwaway database.
func TestContract(t *testing.T) {
	storetest.Run(t, harness{})
}

type harness struct{}

type opened struct {
	*postgres.Store
	dsn  string
	caps store.Caps
}

func open(t testing.TB, dsn string, caps store.Caps) *opened {
	t.Helper()
	s, err := postgres.Open(context.Background(), dsn, postgres.Options{Caps: caps, NodeName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &opened{Store: s, dsn: dsn, caps: caps}
}

func (harness) Open(t *testing.T, caps store.Caps) store.Backend {
	return open(t, pgtest.New(t), caps)
}

func (harness) Reopen(t *testing.T, b store.Backend) store.Backend {
	o := b.(*opened)
	o.Close()
	return open(t, o.dsn, o.caps)
}

// Nodes starting together apply the migrations once; a database whose
// schema is newer than the binary is refused, naming both versions.
func TestMigrations(t *testing.T) {
	dsn := pgtest.New(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(context.Background(), dsn, postgres.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("a node starting beside others: %v", err)
		}
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows, version int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_version`).Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != version {
		t.Fatalf("schema_version has %d rows up to version %d: a migration ran twice", rows, version)
	}
	if _, err := conn.Exec(context.Background(), `INSERT INTO schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	_, err = postgres.Open(context.Background(), dsn, postgres.Options{})
	if err == nil || !strings.Contains(err.Error(), "version 99") || !strings.Contains(err.Error(), "binary's "+strconv.Itoa(version)) {
		t.Fatalf("a newer schema: %v", err)
	}
}

// Mail queued on one node wakes the relay of another at once.
func TestWatchQueueWakesOtherNodes(t *testing.T) {
	dsn := pgtest.New(t)
	a := open(t, dsn, store.Caps{})
	b := open(t, dsn, store.Caps{})
	_, srv := storetest.Init(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	woken := make(chan struct{}, 16)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		b.WatchQueue(ctx, func() { woken <- struct{}{} })
	}()
	defer func() { cancel(); <-watched }()
	select {
	case <-woken: // the wake of its start, for whatever it may have missed
	case <-time.After(10 * time.Second):
		t.Fatal("WatchQueue did not start")
	}
	if err := storetest.Enqueue(a, storetest.NewMessage(srv.ID, time.Now()), []byte("Subject: x\r\n\r\nx")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("mail queued on node A did not wake node B")
	}
}

// A once-per-installation job runs on one node at a time.
func TestRunExclusive(t *testing.T) {
	dsn := pgtest.New(t)
	a := open(t, dsn, store.Caps{})
	b := open(t, dsn, store.Caps{})
	ctx := context.Background()
	ran, err := a.RunExclusive(ctx, "retention", func() {
		if ran, err := b.RunExclusive(ctx, "retention", func() {}); ran || err != nil {
			t.Errorf("node B ran the job while node A ran it: %v, %v", ran, err)
		}
		if ran, err := b.RunExclusive(ctx, "reverify", func() {}); !ran || err != nil {
			t.Errorf("node B could not run another job: %v, %v", ran, err)
		}
	})
	if !ran || err != nil {
		t.Fatalf("node A: %v, %v", ran, err)
	}
	if ran, err := b.RunExclusive(ctx, "retention", func() {}); !ran || err != nil {
		t.Errorf("node B after A finished: %v, %v", ran, err)
	}
}

// A node that dies keeps its claims until their leases end; then another
// node claims and delivers them, and until then it cannot.
func TestLeaseOfADeadNodeComesBackToAnother(t *testing.T) {
	dsn := pgtest.New(t)
	a, err := postgres.Open(context.Background(), dsn, postgres.Options{NodeName: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b := open(t, dsn, store.Caps{})
	_, srv := storetest.Init(t, b)
	now := time.Now()
	if err := storetest.Enqueue(b, storetest.NewMessage(srv.ID, now), []byte("x")); err != nil {
		t.Fatal(err)
	}
	claimed, err := a.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("node A claimed %d, %v", len(claimed), err)
	}
	a.Close() // node A dies holding the lease
	if got, err := b.Claim(store.ClaimRequest{Now: now.Add(30 * time.Second), Lease: time.Minute, Max: 10}); err != nil || len(got) != 0 {
		t.Fatalf("node B claimed %d entries of a lease not yet over, %v", len(got), err)
	}
	got, err := b.Claim(store.ClaimRequest{Now: now.Add(61 * time.Second), Lease: time.Minute, Max: 10})
	if err != nil || len(got) != 1 || got[0].MessageID != claimed[0].MessageID {
		t.Fatalf("node B after the lease ended: %+v, %v", got, err)
	}
	if err := b.RecordAttempt(store.Attempt{Entry: got[0], At: now.Add(62 * time.Second),
		Outcomes: []store.Outcome{{Recipient: got[0].Pending[0], Type: store.EventDelivered}}}); err != nil {
		t.Fatal(err)
	}
}
