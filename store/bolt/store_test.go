package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
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

// A background write (the relay's record of an attempt) waits for
// company: a write a client waits on, arriving within BackgroundDelay,
// shares its commit and ends the wait. Alone, it is committed once the
// delay is over. Either way it returns once it is on disk.
func TestBackgroundWriteSharesTheNextCommit(t *testing.T) {
	var mu sync.Mutex
	var batches []int
	s, _ := openTest(t, Options{BackgroundDelay: time.Hour, OnCommit: func(n int, _ time.Duration) {
		mu.Lock()
		batches = append(batches, n)
		mu.Unlock()
	}})
	put := func(key string) func(*bbolt.Tx) error {
		return func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte(key), []byte("v")) }
	}
	background := make(chan error, 1)
	go func() { background <- s.updateBackground(put("background")) }()
	select {
	case err := <-background:
		t.Fatalf("a background write returned (%v) with nothing to share its commit and an hour's delay", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := s.update(put("client")); err != nil {
		t.Fatal(err)
	}
	if err := <-background; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]int(nil), batches...)
	mu.Unlock()
	if len(got) != 1 || got[0] != 2 {
		t.Fatalf("commits of %v writes, want one of the two together", got)
	}
	if err := s.view(func(tx *bbolt.Tx) error {
		for _, k := range []string{"background", "client"} {
			if tx.Bucket(bucketMeta).Get([]byte(k)) == nil {
				t.Errorf("%s write not in the store", k)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	alone, _ := openTest(t, Options{BackgroundDelay: 10 * time.Millisecond})
	if err := alone.updateBackground(put("alone")); err != nil {
		t.Fatal(err)
	}
}

// While clients submit (Hurry), a background write does not wait.
func TestBackgroundWriteHurries(t *testing.T) {
	s, _ := openTest(t, Options{BackgroundDelay: time.Hour, Hurry: func() bool { return true }})
	done := make(chan error, 1)
	go func() {
		done <- s.updateBackground(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("k"), []byte("v")) })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a background write waited for company while clients were submitting")
	}
}

// Close answers a background write still waiting for company.
func TestCloseCommitsAWaitingBackgroundWrite(t *testing.T) {
	s, _ := openTest(t, Options{BackgroundDelay: time.Hour})
	done := make(chan error, 1)
	go func() {
		done <- s.updateBackground(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("k"), []byte("v")) })
	}()
	time.Sleep(50 * time.Millisecond) // the committer holds it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the waiting background write: %v", err)
	}
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

// syncedFreelist reads, from the newest of the file's two meta pages,
// whether bbolt's freelist is written in the file (else Open rebuilds it
// by walking every page).
func syncedFreelist(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A meta page: a 16-byte page header, then magic, version, page
	// size, flags (4 bytes each), the root bucket (16), the freelist's
	// page id, the high-water page id and the transaction id (8 each).
	meta := func(off int64) (freelist, txid uint64, pageSize int64) {
		var b [80]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			t.Fatal(err)
		}
		return binary.LittleEndian.Uint64(b[48:]), binary.LittleEndian.Uint64(b[64:]), int64(binary.LittleEndian.Uint32(b[24:]))
	}
	fl0, tx0, pageSize := meta(0)
	fl1, tx1, _ := meta(pageSize)
	if tx1 > tx0 {
		fl0 = fl1
	}
	return fl0 != ^uint64(0)
}

// A clean Close leaves the freelist written, so that the next Open reads
// it instead of walking the whole file; commits do not write it.
func TestCloseWritesFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, srv := storetest.Init(t, s)
	enqueue := func() {
		t.Helper()
		for range 20 {
			if err := storetest.Enqueue(s, storetest.NewMessage(srv.ID, time.Now()), []byte("Subject: x\r\n\r\nx")); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue()
	if syncedFreelist(t, path) {
		t.Error("the freelist is written at commits")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !syncedFreelist(t, path) {
		t.Fatal("no freelist written at Close")
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	enqueue()
	if syncedFreelist(t, path) {
		t.Error("the freelist is written at commits after a reopen")
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil || !syncedFreelist(t, path) {
		t.Fatalf("second Close: %v, freelist written %v", err, syncedFreelist(t, path))
	}

	// Opened and closed with nothing written: the file is unchanged.
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Server(srv.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Errorf("a store only read was changed at Close (%v)", err)
	}
}
