package bolt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// openCopy writes a backup to a file, opens it as a store and checks it.
func openCopy(t *testing.T, data []byte) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("the copy does not open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Check(); err != nil {
		t.Fatalf("the copy fails the consistency check: %v", err)
	}
	return c
}

// TestBackupUnderWrites copies the store while several writers enqueue
// messages: the copy opens, passes Check, and holds every message whose
// Enqueue returned before the copy began.
func TestBackupUnderWrites(t *testing.T) {
	s, _ := openTest(t, Options{})
	_, srv := storetest.Init(t, s)

	type acked struct {
		id string
		at time.Time
	}
	const writers = 8
	var (
		mu    sync.Mutex
		acks  []acked
		wg    sync.WaitGroup
		stop  = make(chan struct{})
		errCh = make(chan error, writers)
	)
	// Enough messages before the copy that it takes a while.
	body := bytes.Repeat([]byte("0123456789abcdef"), 256) // 4 KiB
	for range 500 {
		m := storetest.NewMessage(srv.ID, time.Now())
		if err := storetest.Enqueue(s, m, body); err != nil {
			t.Fatal(err)
		}
		acks = append(acks, acked{m.MessageID, time.Now()})
	}
	for range writers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := storetest.NewMessage(srv.ID, time.Now())
				if err := storetest.Enqueue(s, m, body); err != nil {
					errCh <- err
					return
				}
				at := time.Now()
				mu.Lock()
				acks = append(acks, acked{m.MessageID, at})
				mu.Unlock()
			}
		})
	}
	// Let the writers get going, then copy.
	for {
		mu.Lock()
		n := len(acks)
		mu.Unlock()
		if n >= 700 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var buf bytes.Buffer
	began := time.Now()
	n, err := s.Backup(&buf)
	ended := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	// Keep writing a little after the copy, then stop.
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Fatalf("a writer failed: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("Backup returned %d, wrote %d bytes", n, buf.Len())
	}

	c := openCopy(t, buf.Bytes())
	before, during := 0, 0
	for _, a := range acks {
		_, err := c.Message(srv.ID, a.id)
		switch {
		case a.at.Before(began):
			before++
			if err != nil {
				t.Errorf("message %s, accepted %s before the copy began, is not in it: %v", a.id, began.Sub(a.at), err)
			}
		case a.at.Before(ended):
			during++
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("message %s in the copy: %v", a.id, err)
		}
	}
	t.Logf("copy of %d bytes in %s; %d messages accepted before it, %d during it, %d in all", n, ended.Sub(began), before, during, len(acks))
	if before < 700 {
		t.Errorf("only %d messages before the copy", before)
	}
}

// blockingWriter blocks its first Write until released, so a test can act
// while a backup is in progress.
type blockingWriter struct {
	buf      bytes.Buffer
	started  chan struct{}
	release  chan struct{}
	once     sync.Once
	released bool
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.once.Do(func() {
		close(w.started)
		<-w.release
	})
	return w.buf.Write(p)
}

// TestBackupIsASnapshot writes while a backup is held up half way: the
// write completes (the backup holds no write lock) and is not in the copy,
// which is the store as it was when the backup began.
func TestBackupIsASnapshot(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, srv := storetest.Init(t, s)
	// A large message of another server grows the file's memory map well
	// past what the next small write needs: a write that had to remap the
	// file would wait for the backup's read transaction (see Backup). (In
	// the same server's bucket, the next write would rewrite the large
	// value's leaf page, and need that much room again.)
	other, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Other"}, storetest.Token("other"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.Enqueue(s, storetest.NewMessage(other.ID, time.Now()), bytes.Repeat([]byte("x"), 5<<20)); err != nil {
		t.Fatal(err)
	}
	first := storetest.NewMessage(srv.ID, time.Now())
	if err := storetest.Enqueue(s, first, []byte("before the backup")); err != nil {
		t.Fatal(err)
	}

	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := s.Backup(w)
		done <- result{n, err}
	}()
	<-w.started

	during := storetest.NewMessage(srv.ID, time.Now())
	wrote := make(chan error, 1)
	go func() { wrote <- storetest.Enqueue(s, during, []byte("during the backup")) }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(w.release)
		<-done
		t.Fatal("a write waited for the backup to finish")
	}
	close(w.release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.n != int64(w.buf.Len()) {
		t.Errorf("Backup returned %d, wrote %d bytes", r.n, w.buf.Len())
	}

	c := openCopy(t, w.buf.Bytes())
	if _, err := c.Message(srv.ID, first.MessageID); err != nil {
		t.Errorf("the message written before the backup: %v", err)
	}
	if _, err := c.Message(srv.ID, during.MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the message written during the backup is in the copy (%v)", err)
	}
	if _, err := s.Message(srv.ID, during.MessageID); err != nil {
		t.Errorf("the message written during the backup, in the store: %v", err)
	}
}

func TestBackupClosed(t *testing.T) {
	s, _ := openTest(t, Options{})
	s.Close()
	if _, err := s.Backup(new(bytes.Buffer)); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Backup after Close: %v, want ErrClosed", err)
	}
}

// A failing writer's error comes back.
func TestBackupWriterError(t *testing.T) {
	s, _ := openTest(t, Options{})
	storetest.Init(t, s)
	want := errors.New("disk full")
	// bbolt formats the writer's error with %s, so errors.Is cannot see it.
	if _, err := s.Backup(failingWriter{want}); err == nil || !strings.Contains(err.Error(), want.Error()) {
		t.Fatalf("Backup into a failing writer: %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
