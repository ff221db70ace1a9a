package postgres

import "context"

// RunExclusive runs fn while this node holds the session advisory lock of
// the job name (pg_try_advisory_lock), on a connection of its own; when
// another node holds it, fn does not run.
func (s *Store) RunExclusive(ctx context.Context, name string, fn func()) (bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('postern job ' || $1))`, name).Scan(&got); err != nil {
		return false, err
	}
	if !got {
		return false, nil
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := conn.Exec(c, `SELECT pg_advisory_unlock(hashtext('postern job ' || $1))`, name); err != nil {
			// A connection that may still hold the lock goes, lock and all.
			conn.Conn().Close(c)
		}
	}()
	fn()
	return true, nil
}
