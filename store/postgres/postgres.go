// Package postgres is the storage backend on PostgreSQL, for several
// Postern nodes sharing one database: every method is one transaction,
// the queue is claimed with leases under FOR UPDATE SKIP LOCKED, and the
// schema lives in numbered migrations applied under an advisory lock.
package postgres

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postern/postern/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Options tune the backend. The zero value is what production uses.
type Options struct {
	// Caps bound what one tenant can create; zero fields mean no cap.
	Caps store.Caps
	// NodeName names this node in the leases it holds (node-name);
	// default the hostname.
	NodeName string
	// CredentialsPoll is how often the credentials generation other
	// nodes move is read; default 1s.
	CredentialsPoll time.Duration
}

// Store is the open backend. Its methods are safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	opts Options

	resumeMu sync.Mutex
	resume   map[int64]cursor // see Claim

	credentials atomic.Uint64 // see CredentialsGeneration
	seenShared  atomic.Int64  // the shared generation last read
	stop        chan struct{}
	done        chan struct{}
	enqueues    chan *enqueue
	committers  sync.WaitGroup
	closeOnce   sync.Once
	closed      atomic.Bool
}

var (
	_ store.Backend = (*Store)(nil)
)

// opTimeout bounds one operation: a database that does not answer makes
// the caller fail (a 451 at the intake), not hang.
const opTimeout = 30 * time.Second

// Open connects to the database at dsn (a postgres:// URL or key=value
// string), applies the migrations it lacks, and refuses a schema newer
// than this binary knows.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: the PostgreSQL DSN: %w", err)
	}
	if opts.NodeName == "" {
		opts.NodeName, _ = os.Hostname()
	}
	if opts.CredentialsPoll <= 0 {
		opts.CredentialsPoll = time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{pool: pool, opts: opts, resume: map[int64]cursor{}, stop: make(chan struct{}), done: make(chan struct{}),
		enqueues: make(chan *enqueue)}
	for range committers {
		s.committers.Add(1)
		go s.committer()
	}
	if v, err := s.sharedCredentials(ctx); err == nil {
		s.seenShared.Store(v)
	}
	go s.pollCredentials()
	return s, nil
}

// migrate applies the pending migrations in order, under an advisory
// lock so that nodes starting together do not race.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: PostgreSQL: %w", err)
	}
	defer conn.Release()
	const lockKey = "postern schema"
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtext($1 || current_schema()))`, lockKey); err != nil {
		return fmt.Errorf("store: PostgreSQL: %w", err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtext($1 || current_schema()))`, lockKey)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("store: PostgreSQL: %w", err)
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return fmt.Errorf("store: PostgreSQL: %w", err)
	}
	if have > len(names) {
		return fmt.Errorf("store: the database's schema is version %d, newer than this binary's %d: run a Postern as new as the newest node", have, len(names))
	}
	for i, name := range names[have:] {
		version := have + i + 1
		if want := fmt.Sprintf("migrations/%04d_", version); !strings.HasPrefix(name, want) {
			return fmt.Errorf("store: migration %s is not number %d", name, version)
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			tx.Rollback(ctx)
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_version (version) VALUES ($1)`, version); err != nil {
			tx.Rollback(ctx)
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("store: migration %s: %w", name, err)
		}
	}
	return nil
}

// Close stops the credentials poll and closes the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		<-s.done
		s.committers.Wait()
		s.pool.Close()
	})
	return nil
}

// Ping checks that the database answers a write transaction.
func (s *Store) Ping() error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT 1`)
		return err
	})
}

// update runs fn in one read-write transaction, committed when fn
// returns nil. With synchronous_commit on (PostgreSQL's default), the
// commit is durable when it returns; concurrent callers' commits share
// the WAL's flushes as PostgreSQL groups them.
func (s *Store) update(fn func(context.Context, pgx.Tx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.dbError(err)
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback(ctx)
		return s.dbError(err)
	}
	return s.dbError(tx.Commit(ctx))
}

// batch sends b as one implicit transaction: every statement or none,
// committed when it returns without error.
func (s *Store) batch(b *pgx.Batch) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return s.dbError(s.pool.SendBatch(ctx, b).Close())
}

// view runs fn in one read-only transaction, on one snapshot.
func (s *Store) view(fn func(context.Context, pgx.Tx) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return s.dbError(err)
	}
	defer tx.Rollback(ctx)
	return s.dbError(fn(ctx, tx))
}

// dbError makes a closed pool ErrClosed; other errors pass.
func (s *Store) dbError(err error) error {
	if err != nil && s.closed.Load() && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %v", store.ErrClosed, err)
	}
	return err
}

// isUnique reports whether err is a unique violation (of constraint
// name, when name is not "").
func isUnique(err error, name string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && (name == "" || pe.ConstraintName == name)
}

// isForeignKey reports whether err is a foreign key violation.
func isForeignKey(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// querier is a transaction, or the pool for a read of one statement.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readOne runs a read of one statement: on the pool, in one round trip,
// rather than in a transaction of its own (three). The hot reads of the
// intake (a token at AUTH, the sender's domain and each recipient's
// suppression) go this way.
func (s *Store) readOne(fn func(context.Context, querier) error) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return s.dbError(fn(ctx, s.pool))
}

// getDoc reads one doc into v; no row is ErrNotFound.
func getDoc(ctx context.Context, tx querier, v any, sql string, args ...any) error {
	var raw []byte
	if err := tx.QueryRow(ctx, sql, args...).Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	}
	return json.Unmarshal(raw, v)
}

// viewDocs is docs in a read-only transaction of its own.
func viewDocs[T any](s *Store, sql string, args ...any) ([]T, error) {
	var out []T
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = docs[T](ctx, tx, sql, args...)
		return err
	})
	return out, err
}

// docs reads the docs of every row into a slice.
func docs[T any](ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]T, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// exists reports whether the query returns a row.
func exists(ctx context.Context, tx pgx.Tx, sql string, args ...any) (bool, error) {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (`+sql+`)`, args...).Scan(&ok)
	return ok, err
}

// serverExists reports whether server id exists, locking it against
// deletion until the transaction ends when lock is set.
func serverExists(ctx context.Context, tx pgx.Tx, id int64, lock bool) (bool, error) {
	q := `SELECT 1 FROM servers WHERE id = $1`
	if lock {
		q += ` FOR SHARE`
	}
	return exists(ctx, tx, q, id)
}

// requireServer fails with ErrNotFound when server id does not exist: a
// read of a server's mail that is not there.
func requireServer(ctx context.Context, tx pgx.Tx, id int64) error {
	ok, err := serverExists(ctx, tx, id, false)
	if err == nil && !ok {
		err = store.ErrNotFound
	}
	return err
}

// CredentialsGeneration changes after every committed change that can
// take away what a token grants, on this node at once and on the others
// within CredentialsPoll.
func (s *Store) CredentialsGeneration() uint64 { return s.credentials.Load() }

// credentialsChanged moves the shared generation in tx (other nodes see
// it at their next poll).
func credentialsChanged(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('credentials', '1')
		ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text`)
	return err
}

// updateCredentials is update for a change credentialsChanged records:
// this node's generation moves once it is committed.
func (s *Store) updateCredentials(fn func(context.Context, pgx.Tx) error) error {
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := fn(ctx, tx); err != nil {
			return err
		}
		return credentialsChanged(ctx, tx)
	})
	if err == nil {
		s.credentials.Add(1)
	}
	return err
}

func (s *Store) sharedCredentials(ctx context.Context) (int64, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'credentials'`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// pollCredentials moves this node's generation when another node moved
// the shared one.
func (s *Store) pollCredentials() {
	defer close(s.done)
	t := time.NewTicker(s.opts.CredentialsPoll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.CredentialsPoll)
		v, err := s.sharedCredentials(ctx)
		cancel()
		if err == nil && s.seenShared.Swap(v) != v {
			s.credentials.Add(1)
		}
	}
}

// marshal is json.Marshal for a doc column.
func marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Location says which database the store is, for operators: the host,
// port, database and user of the DSN, never its password.
func (s *Store) Location() string {
	c := s.pool.Config().ConnConfig
	return fmt.Sprintf("PostgreSQL %s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// PoolConnections counts the pool's connections by state: acquired (in
// use), idle, and constructing (being opened).
func (s *Store) PoolConnections() map[string]int {
	st := s.pool.Stat()
	return map[string]int{"acquired": int(st.AcquiredConns()), "idle": int(st.IdleConns()), "constructing": int(st.ConstructingConns())}
}
