package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// queueChannel is the channel of the notifications that mail is due.
const queueChannel = "postern_queue"

// notifyQueue tells every node's relay, when tx commits, that mail is
// due (PostgreSQL delivers a notification at commit, and folds the
// identical ones of one transaction into one).
func notifyQueue(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, queueChannel)
	return err
}

// WatchQueue calls wake for every notification that mail is due, on a
// connection of its own, until ctx is done; a lost connection is opened
// again (and wake called, since a notification may have been missed).
func (s *Store) WatchQueue(ctx context.Context, wake func()) error {
	for backoff := 100 * time.Millisecond; ctx.Err() == nil; backoff = min(backoff*2, 5*time.Second) {
		if s.watch(ctx, wake) {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
	return nil
}

// watch listens until the connection fails or ctx is done, and reports
// whether it listened at all.
func (s *Store) watch(ctx context.Context, wake func()) bool {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+queueChannel); err != nil {
		return false
	}
	defer func() {
		// The connection goes back to the pool: it must listen no more.
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(c, `UNLISTEN *`); err != nil {
			conn.Conn().Close(c)
		}
	}()
	wake()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return true
		}
		wake()
	}
}
