package bolt

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

// openTest opens a store in a temporary directory and, when the test ends,
// checks its consistency and closes it.
func openTest(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("consistency check: %v", err)
		}
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return s, path
}

// initTest creates an account and a server.
// A failing commit (disk full, I/O error) reaches every writer of the
// batch and leaves nothing of it on disk.
func TestCommitFailureWritesNothing(t *testing.T) {
	var fail atomic.Bool
	s, _ := openTest(t, Options{BeforeCommit: func() error {
		if fail.Load() {
			return errors.New("injected: no space left on device")
		}
		return nil
	}})
	_, srv := storetest.Init(t, s)
	fail.Store(true)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = storetest.Enqueue(s, storetest.NewMessage(srv.ID, time.Now()), []byte("x"))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("write %d succeeded under a failing commit", i)
		}
	}
	if q, _ := s.Queue(100); len(q) != 0 {
		t.Fatalf("queue has %d entries after failed commits", len(q))
	}
	if m, _ := s.Messages(srv.ID, 100); len(m) != 0 {
		t.Fatalf("%d messages after failed commits", len(m))
	}
	// Space returns: writes succeed again.
	fail.Store(false)
	if err := storetest.Enqueue(s, storetest.NewMessage(srv.ID, time.Now()), []byte("x")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// One failing write in a batch fails alone; the others are committed.
// Concurrent writers share commits: fewer commits than writes.
func TestGroupCommitSharesCommits(t *testing.T) {
	var commits, writes atomic.Int64
	s, _ := openTest(t, Options{OnCommit: func(n int, _ time.Duration) {
		commits.Add(1)
		writes.Add(int64(n))
	}})
	_, srv := storetest.Init(t, s)
	commits.Store(0)
	writes.Store(0)
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := storetest.Enqueue(s, storetest.NewMessage(srv.ID, time.Now()), []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if writes.Load() != 640 {
		t.Fatalf("%d writes committed, want 640", writes.Load())
	}
	if commits.Load() >= writes.Load() {
		t.Fatalf("%d commits for %d writes: no sharing", commits.Load(), writes.Load())
	}
	t.Logf("%d writes in %d commits", writes.Load(), commits.Load())
}

func TestSecondOpenTimesOut(t *testing.T) {
	_, path := openTest(t, Options{})
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("second open of a file in use succeeded")
	}
}

func TestCheckFindsDanglingQueueEntry(t *testing.T) {
	s, _ := openTest(t, Options{})
	_, srv := storetest.Init(t, s)
	msg := storetest.NewMessage(srv.ID, time.Now())
	if err := storetest.Enqueue(s, msg, []byte("x")); err != nil {
		t.Fatal(err)
	}
	// Corrupt on purpose, then repair so the cleanup check passes.
	if err := s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMail).Bucket(itob(srv.ID)).Bucket(bucketRaw).Delete([]byte(msg.MessageID))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil {
		t.Fatal("Check passed a message without its raw MIME")
	}
	if err := s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMail).Bucket(itob(srv.ID)).Bucket(bucketRaw).Put([]byte(msg.MessageID), []byte("x"))
	}); err != nil {
		t.Fatal(err)
	}
}
