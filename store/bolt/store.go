// Package bolt is the storage backend on one embedded bbolt file, the
// default: writes from concurrent callers share commits (one fsync for
// many messages), and no bbolt type leaves this package.
package bolt

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// FileName is the store's file inside the data directory.
const FileName = "postern.db"

// Options tune how the store is opened. The zero value is what production uses.
type Options struct {
	// LockTimeout bounds the wait for another process's lock on the file;
	// bbolt would otherwise wait forever. Default 5s.
	LockTimeout time.Duration
	// MaxBatch caps how many writes share one commit. Default 512.
	MaxBatch int
	// BeforeCommit, when set, runs inside every write transaction just
	// before it commits; an error aborts the transaction. It is the fault
	// injection point for tests of write failures (disk full, I/O errors).
	BeforeCommit func() error
	// OnCommit, when set, is told how many writes shared each successful
	// commit and how long the commit took (for metrics).
	OnCommit func(writes int, took time.Duration)
	// BackgroundDelay is how long a write no client waits on (the relay's
	// record of an attempt) waits for others to share its commit.
	// Default 2ms.
	BackgroundDelay time.Duration
	// Hurry, when set, is asked before a background write waits: while
	// it returns true (clients are submitting, so commits come often
	// anyway and each one's length is their wait), background writes are
	// committed as soon as they come, as every other write is.
	Hurry func() bool
	// Caps bound what one tenant can create; zero fields mean no cap.
	Caps store.Caps
}

// capPerAccount refuses one more record in b for the account when it has
// limit already (0: no cap), with a CapError naming setting. The records
// of b are JSON with an AccountID field (servers, domains).
func capPerAccount(b *bbolt.Bucket, accountID int64, limit int, setting, what string) error {
	if limit <= 0 {
		return nil
	}
	n := 0
	err := b.ForEach(func(_, v []byte) error {
		var rec struct{ AccountID int64 }
		if err := json.Unmarshal(v, &rec); err != nil {
			return err
		}
		if rec.AccountID == accountID {
			n++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n >= limit {
		return &store.CapError{Setting: setting, What: what, Limit: limit}
	}
	return nil
}

// Store is the open store. Its methods are safe for concurrent use.
type Store struct {
	db      *bbolt.DB
	opts    Options
	servers decodedCache[store.Server]
	domains decodedCache[store.Domain]

	resumeMu sync.Mutex
	resume   map[int64][]byte // see claimResume

	writes     chan *write // from update: commit at once
	background chan *write // from updateBackground: see there
	closing    chan struct{}
	done       chan struct{}
	once       sync.Once
	closeMu    sync.RWMutex
	closed     bool

	credentials atomic.Uint64 // see CredentialsGeneration
	scan        scanSettings
	openedAt    int // the file's transaction ID when opened: see Close
}

// write is one unit of work for the group committer.
type write struct {
	fn   func(*bbolt.Tx) error
	done chan error
}

// Top-level buckets.
var (
	bucketMeta     = []byte("meta")
	bucketAccounts = []byte("accounts")
	bucketServers  = []byte("servers")
	bucketTokens   = []byte("tokens")
	bucketQueue    = []byte("queue")
	bucketMail     = []byte("mail") // one sub-bucket per server

	// Inside each server's mail bucket.
	bucketMessages = []byte("messages") // MessageID → metadata JSON
	bucketRaw      = []byte("raw")      // MessageID → raw MIME
	bucketByTime   = []byte("bytime")   // ReceivedAt (8 bytes) + MessageID → empty

	keyInitialized = []byte("initialized")
)

var topBuckets = [][]byte{bucketMeta, bucketAccounts, bucketServers, bucketTokens, bucketQueue, bucketMail, bucketDomains, bucketDomainNames, bucketDomainClaims, bucketAccountEvents, bucketSTS, bucketTLSReports, bucketWebhookIDs, bucketOutbox, bucketDMARC, bucketUsers, bucketUserEmails, bucketMemberships, bucketUserMemberships, bucketSignInTokens, bucketMarks, bucketSessions, bucketUserSessions}

// Path returns the store's file path inside a data directory.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// Exists reports whether a store file is present in dataDir.
func Exists(dataDir string) bool {
	_, err := os.Stat(Path(dataDir))
	return err == nil
}

// initialMmapSize is the address space the file is mapped into at first.
// bbolt maps the file anew each time it outgrows the mapping (doubling
// from 32 KiB); a remap waits for every open read transaction and stalls
// every commit meanwhile (munmap alone took 9 ms here at 64 MiB), which
// showed in the intake's tail latency. Address space costs nothing on a
// 64-bit system until pages are touched.
const initialMmapSize = 1 << 30 * (strconv.IntSize / 64)

// Open opens (creating if needed) the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.BackgroundDelay <= 0 {
		opts.BackgroundDelay = defaultBackgroundDelay
	}
	// NoFreelistSync: the freelist is rebuilt when the file is opened
	// instead of written at every commit (as etcd runs bbolt), which saves
	// pages per commit without weakening durability.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         opts.LockTimeout,
		FreelistType:    bbolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is locked by another process (is postern already running?)", path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Create the buckets only when some are missing, so opening an
	// existing store writes nothing.
	complete := true
	if err := db.View(func(tx *bbolt.Tx) error {
		for _, name := range topBuckets {
			complete = complete && tx.Bucket(name) != nil
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: read %s: %w", path, err)
	}
	if !complete {
		err = db.Update(func(tx *bbolt.Tx) error {
			for _, name := range topBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: prepare %s: %w", path, err)
	}
	s := &Store{
		db:         db,
		opts:       opts,
		writes:     make(chan *write, opts.MaxBatch),
		background: make(chan *write, opts.MaxBatch),
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
		domains:    decodedCache[store.Domain]{clone: cloneDomain},
		scan:       scanSettings{chunk: scanChunk, limit: store.SearchScanLimit},
	}
	_ = db.View(func(tx *bbolt.Tx) error { s.openedAt = tx.ID(); return nil })
	go s.commitLoop()
	return s, nil
}

// Close waits for pending writes, writes the freelist once, then closes
// the file.
//
// With NoFreelistSync, bbolt rebuilds the freelist at open by walking
// every page of the file: 4.5 s for a store of a million messages (3.3 GB)
// in the page cache, 13 to 41 s from disk. Syncing it at every commit
// instead made commits ten times slower after a purge had freed half of
// that file (44 ms against 4.3 ms). So the freelist is written once here,
// from memory, by one empty commit, and the next Open reads it; the first
// commit after marks it stale again. After a crash, Open walks the file as
// before.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		close(s.closing)
		s.closeMu.Unlock()
		<-s.done
		var ferr error
		var now int
		_ = s.db.View(func(tx *bbolt.Tx) error { now = tx.ID(); return nil })
		if now != s.openedAt {
			// The writer has stopped: no transaction reads the field now.
			s.db.NoFreelistSync = false
			if ferr = s.db.Update(func(*bbolt.Tx) error { return nil }); ferr != nil {
				ferr = fmt.Errorf("store: writing the freelist: %w", ferr)
			}
		}
		err = errors.Join(ferr, s.db.Close())
	})
	return err
}

// update runs fn in a write transaction shared with whatever other writes
// are waiting (group commit), and returns once that transaction is synced
// to disk. fn may run more than once (when another write in its batch
// fails, the batch is retried without it), so it must not have effects
// outside the transaction.
func (s *Store) update(fn func(*bbolt.Tx) error) error { return s.send(s.writes, fn) }

// updateBackground is update for a write no client waits on, the relay's
// record of a delivery attempt: it waits up to BackgroundDelay for other
// writes, and any write of update ends the wait, so that it shares their
// commit instead of paying one of its own. It still returns only once its
// transaction is on disk.
//
// Deliveries end one at a time, and each record was a commit of one or
// two writes: 0.78 commits per message signed end to end, each a quarter
// of a millisecond of CPU (two fdatasyncs, the pages written). Waiting
// 2 ms made end to end signed 8% faster (/tmp harness, 4,000 messages,
// three pairs: 962/981, 972/1,039, 942/1,038 msgs/s). While clients
// submit, the records joined their commits and made them longer: the
// intake's p99 at 4,000 msgs/s offered rose by about a millisecond (13
// pairs), so then (Options.Hurry) they do not wait.
func (s *Store) updateBackground(fn func(*bbolt.Tx) error) error {
	return s.send(s.background, fn)
}

// defaultBackgroundDelay is Options.BackgroundDelay's default.
const defaultBackgroundDelay = 2 * time.Millisecond

// send hands fn to the committer on queue and waits for its commit.
func (s *Store) send(queue chan *write, fn func(*bbolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	// The read lock keeps Close from closing the committer between the
	// check and the send, which would leave this write unanswered.
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	queue <- w
	s.closeMu.RUnlock()
	return <-w.done
}

// updateCredentials is update for a change that can take away what a
// token grants (a revoked token, a deleted or edited server or account):
// once the change is on disk, it moves CredentialsGeneration on.
func (s *Store) updateCredentials(fn func(*bbolt.Tx) error) error {
	err := s.update(fn)
	if err == nil {
		s.credentials.Add(1)
	}
	return err
}

// CredentialsGeneration is a number that changes after every committed
// change that can take away what a token grants: a revoked token, a
// deleted account or server, an edited server (SMTP turned off, limits).
// An open session compares it with the number it read when it
// authenticated, and reads its token and server again only when it
// moved, so that checking before each message costs no store read while
// nothing changes. It moves only after the commit, so a session that
// reads it before looking its credentials up never keeps a stale answer.
func (s *Store) CredentialsGeneration() uint64 { return s.credentials.Load() }

// commitLoop is the group committer. Unlike bbolt's Batch it never waits for
// a batch to fill when a client waits: it takes whatever writes queued up
// while the previous commit was syncing. A lone client therefore pays one
// fsync per write, and concurrent clients share fsyncs in proportion to
// how many are waiting. Only a background write (updateBackground) that
// finds nothing else queued waits, briefly, for company.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*write, 0, s.opts.MaxBatch)
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	for {
		batch = batch[:0]
		select {
		case w := <-s.writes:
			batch = append(batch, w)
		case w := <-s.background:
			batch = append(batch, w)
			if s.opts.Hurry != nil && s.opts.Hurry() {
				break
			}
			// Nobody waits on it to reply: give other writes a moment
			// to join it; one from update ends the moment.
			wait.Reset(s.opts.BackgroundDelay)
			select {
			case w := <-s.writes:
				batch = append(batch, w)
			case <-wait.C:
			case <-s.closing:
			}
			if !wait.Stop() {
				select {
				case <-wait.C:
				default:
				}
			}
		case <-s.closing:
			// Every write sent before closing (see update) still gets
			// its answer.
			for {
				select {
				case w := <-s.writes:
					s.commit([]*write{w})
				case w := <-s.background:
					s.commit([]*write{w})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case w := <-s.writes:
				batch = append(batch, w)
			case w := <-s.background:
				batch = append(batch, w)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

// commit runs a batch in one transaction. If one write's function fails,
// that write alone gets its error and the rest are retried without it.
func (s *Store) commit(batch []*write) {
	for len(batch) > 0 {
		failed := -1
		start := time.Now()
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, w := range batch {
				if err := w.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			if s.opts.BeforeCommit != nil {
				return s.opts.BeforeCommit()
			}
			return nil
		})
		if err == nil {
			if s.opts.OnCommit != nil {
				s.opts.OnCommit(len(batch), time.Since(start))
			}
			for _, w := range batch {
				w.done <- nil
			}
			return
		}
		if failed < 0 {
			// The commit itself failed (disk full, I/O error): nothing
			// of the batch is on disk, and every writer must know.
			for _, w := range batch {
				w.done <- err
			}
			return
		}
		batch[failed].done <- err
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// view runs a read-only transaction.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

var (
	_ store.Backend  = (*Store)(nil)
	_ store.Backuper = (*Store)(nil)
	_ store.Checker  = (*Store)(nil)
)
