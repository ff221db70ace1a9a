package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// LoginFailed records a failed login from addr, forgets addr's failures
// older than window, and counts the rest.
func (s *Store) LoginFailed(addr string, now time.Time, window time.Duration) (int, error) {
	n := 0
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		cutoff := now.Add(-window).UnixNano()
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM login_failures WHERE addr = $1 AND at_ns <= $2`, addr, cutoff)
		b.Queue(`INSERT INTO login_failures (addr, at_ns) VALUES ($1, $2)`, addr, now.UnixNano())
		b.Queue(`SELECT count(*) FROM login_failures WHERE addr = $1`, addr).QueryRow(func(row pgx.Row) error { return row.Scan(&n) })
		return tx.SendBatch(ctx, b).Close()
	})
	return n, err
}

// ShutOut refuses addr's logins until until, and forgets its failures
// and the shut-outs that ended over an hour before now. now is the
// caller's clock, not this machine's: the same clock that decides whether
// a shut-out holds.
func (s *Store) ShutOut(addr string, now, until time.Time) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO login_shutouts (addr, until_ns) VALUES ($1, $2)
			ON CONFLICT (addr) DO UPDATE SET until_ns = greatest(login_shutouts.until_ns, excluded.until_ns)`, addr, until.UnixNano())
		b.Queue(`DELETE FROM login_failures WHERE addr = $1`, addr)
		b.Queue(`DELETE FROM login_shutouts WHERE until_ns < $1`, now.Add(-time.Hour).UnixNano())
		return tx.SendBatch(ctx, b).Close()
	})
}

// ShutOutUntil returns when addr's shut-out ends, zero when none holds.
func (s *Store) ShutOutUntil(addr string, now time.Time) (time.Time, error) {
	var until int64
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT until_ns FROM login_shutouts WHERE addr = $1 AND until_ns > $2`, addr, now.UnixNano()).Scan(&until)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, until), nil
}
