package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
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

func testToken(name string) store.NewToken {
	return store.NewToken{Hash: []byte("hash-of-" + name + "-padded-to-be-long-enough"), Token: store.Token{Prefix: name}}
}

// initTest creates an account and a server.
func initTest(t testing.TB, s *Store) (store.Account, store.Server) {
	t.Helper()
	at := testToken("acct")
	at.Role = store.RoleOwner
	a, srv, err := s.Initialize(store.InitParams{
		AccountName:  "Operator",
		AccountToken: at,
		Server:       store.Server{Name: "Default", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		ServerToken:  testToken("srv"),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a, srv
}

func testMessage(serverID int64, at time.Time) *store.Message {
	return &store.Message{
		MessageID:     store.NewMessageID(),
		ServerID:      serverID,
		EnvelopeFrom:  "app@example.com",
		From:          "App <app@example.com>",
		To:            []store.Address{{Email: "alice@example.net", Name: "Alice"}},
		Recipients:    []string{"alice@example.net"},
		Subject:       "Hello",
		Tag:           "welcome",
		Metadata:      map[string]string{"client-id": "42"},
		MessageStream: "outbound",
		ReceivedAt:    at.UTC(),
		Size:          5,
		Status:        store.StatusQueued,
	}
}

func TestInitializeOnce(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, srv := initTest(t, s)
	if acct.ID != 1 || srv.ID != 1 || srv.AccountID != acct.ID {
		t.Fatalf("account %+v server %+v", acct, srv)
	}
	tok, err := s.LookupToken(testToken("srv").Hash)
	if err != nil || tok.Kind != store.KindServer || tok.ServerID != srv.ID || tok.AccountID != acct.ID {
		t.Fatalf("server token: %+v %v", tok, err)
	}
	tok, err = s.LookupToken(testToken("acct").Hash)
	if err != nil || tok.Kind != store.KindAccount || tok.Role != store.RoleOwner || tok.AccountID != acct.ID {
		t.Fatalf("account token: %+v %v", tok, err)
	}
	_, _, err = s.Initialize(store.InitParams{AccountName: "Again", AccountToken: testToken("a2"), Server: store.Server{Name: "X"}, ServerToken: testToken("s2")}, time.Now())
	if !errors.Is(err, store.ErrInitialized) {
		t.Fatalf("second Initialize: %v, want ErrInitialized", err)
	}
	if _, err := s.LookupToken(testToken("a2").Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Initialize left a token behind: %v", err)
	}
	if _, err := s.Account(2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Initialize left an account behind: %v", err)
	}
}

func TestEnqueueAndRead(t *testing.T) {
	s, path := openTest(t, Options{})
	_, srv := initTest(t, s)
	msg := testMessage(srv.ID, time.Now())
	raw := []byte("Subject: Hello\r\n\r\nHi\r\n")
	if err := storetest.Enqueue(s, msg, raw); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store) {
		t.Helper()
		got, err := s.Message(srv.ID, msg.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != "Hello" || got.Tag != "welcome" || got.Metadata["client-id"] != "42" ||
			got.Status != store.StatusQueued || !got.ReceivedAt.Equal(msg.ReceivedAt) || got.To[0].Name != "Alice" {
			t.Fatalf("stored metadata %+v", got)
		}
		gotRaw, err := s.RawMessage(srv.ID, msg.MessageID)
		if err != nil || !bytes.Equal(gotRaw, raw) {
			t.Fatalf("raw %q, %v", gotRaw, err)
		}
		q, err := s.Queue(10)
		if err != nil || len(q) != 1 || q[0].MessageID != msg.MessageID || q[0].ServerID != srv.ID {
			t.Fatalf("queue %+v, %v", q, err)
		}
		list, err := s.Messages(srv.ID, 10)
		if err != nil || len(list) != 1 || list[0].MessageID != msg.MessageID {
			t.Fatalf("messages %+v, %v", list, err)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	check(reopened)
	if err := reopened.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestMessageOfAnotherServerIsNotFound(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, srv := initTest(t, s)
	other, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Other"}, testToken("other"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg := testMessage(srv.ID, time.Now())
	if err := storetest.Enqueue(s, msg, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(other.ID, msg.MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other server reads the message: %v", err)
	}
	if _, err := s.RawMessage(other.ID, msg.MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other server reads the raw message: %v", err)
	}
}

func TestDuplicateServerName(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, _ := initTest(t, s)
	_, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "default"}, testToken("dup"), time.Now())
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
	if _, err := s.LookupToken(testToken("dup").Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused server left its token: %v", err)
	}
}

func TestEnqueueUnknownServer(t *testing.T) {
	s, _ := openTest(t, Options{})
	initTest(t, s)
	if err := storetest.Enqueue(s, testMessage(99, time.Now()), []byte("x")); !errors.Is(err, store.ErrServerMissing) {
		t.Fatalf("got %v, want ErrServerMissing", err)
	}
	if q, _ := s.Queue(10); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
}

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
	_, srv := initTest(t, s)
	fail.Store(true)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = storetest.Enqueue(s, testMessage(srv.ID, time.Now()), []byte("x"))
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
	if err := storetest.Enqueue(s, testMessage(srv.ID, time.Now()), []byte("x")); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// One failing write in a batch fails alone; the others are committed.
func TestBatchIsolatesAFailingWrite(t *testing.T) {
	s, _ := openTest(t, Options{})
	_, srv := initTest(t, s)
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serverID := srv.ID
			if i%8 == 0 {
				serverID = 999 // no such server
			}
			errs[i] = storetest.Enqueue(s, testMessage(serverID, time.Now()), []byte("x"))
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case i%8 == 0 && !errors.Is(err, store.ErrServerMissing):
			t.Errorf("write %d: %v, want ErrServerMissing", i, err)
		case i%8 != 0 && err != nil:
			t.Errorf("write %d: %v", i, err)
		case err == nil:
			ok++
		}
	}
	if q, _ := s.Queue(100); len(q) != ok {
		t.Fatalf("queue has %d entries, want %d", len(q), ok)
	}
}

// Concurrent writers share commits: fewer commits than writes.
func TestGroupCommitSharesCommits(t *testing.T) {
	var commits, writes atomic.Int64
	s, _ := openTest(t, Options{OnCommit: func(n int, _ time.Duration) {
		commits.Add(1)
		writes.Add(int64(n))
	}})
	_, srv := initTest(t, s)
	commits.Store(0)
	writes.Store(0)
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if err := storetest.Enqueue(s, testMessage(srv.ID, time.Now()), []byte("x")); err != nil {
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

func TestClosedStoreRefusesWrites(t *testing.T) {
	s, _ := openTest(t, Options{})
	_, srv := initTest(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := storetest.Enqueue(s, testMessage(srv.ID, time.Now()), []byte("x")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
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
	_, srv := initTest(t, s)
	msg := testMessage(srv.ID, time.Now())
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

func TestNewMessageIDIsTimeOrderedUUIDv7(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := store.NewMessageID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsAny(id[19:20], "89ab") {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
		if id[:13] < prev {
			t.Fatalf("%q sorts before the earlier %q", id, prev)
		}
		prev = id[:13]
	}
	at := time.Date(2026, 11, 27, 8, 0, 0, 500_000, time.UTC)
	if got := store.MessageIDAt(at)[:15]; got != fmt.Sprintf("%08x-%04x-7", uint64(at.UnixMilli())>>16, uint64(at.UnixMilli())&0xffff) {
		t.Fatalf("timestamp bits: %s", got)
	}
}
