package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// CreateSession files a session under its hash, for an existing user
// and account (ErrNotFound); a hash already filed is ErrDuplicate.
func (s *Store) CreateSession(sess store.Session) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sessions (hash, user_id, account_id, csrf, created_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6)`,
			sess.Hash, sess.UserID, sess.AccountID, sess.CSRF, sess.CreatedAt.UnixNano(), sess.LastSeen.UnixNano())
		switch {
		case isForeignKey(err):
			return store.ErrNotFound
		case isUnique(err, ""):
			return store.ErrDuplicate
		}
		return err
	})
}

// Session returns the session filed under hash, in one round trip: the
// console reads it at every request.
func (s *Store) Session(hash string) (store.Session, error) {
	sess := store.Session{Hash: hash}
	var created, seen int64
	err := s.readOne(func(ctx context.Context, q querier) error {
		err := q.QueryRow(ctx, `SELECT user_id, account_id, csrf, created_ns, last_seen_ns FROM sessions WHERE hash = $1`, hash).
			Scan(&sess.UserID, &sess.AccountID, &sess.CSRF, &created, &seen)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Session{}, err
	}
	sess.CreatedAt, sess.LastSeen = time.Unix(0, created).UTC(), time.Unix(0, seen).UTC()
	return sess, nil
}

// UpdateSession replaces a session's account, CSRF token and last
// sight; its user and creation stay.
func (s *Store) UpdateSession(sess store.Session) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE sessions SET account_id = $2, csrf = $3, last_seen_ns = $4 WHERE hash = $1`,
			sess.Hash, sess.AccountID, sess.CSRF, sess.LastSeen.UnixNano())
		if isForeignKey(err) || err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// DeleteSession removes one session; a missing one is no error.
func (s *Store) DeleteSession(hash string) error {
	_, err := s.deleteSessions(`DELETE FROM sessions WHERE hash = $1`, hash)
	return err
}

// DeleteUserSessions removes every session of a user.
func (s *Store) DeleteUserSessions(userID int64) (int, error) {
	return s.deleteSessions(`DELETE FROM sessions WHERE user_id = $1`, userID)
}

// DeleteSessionsIdleSince removes every session last seen before t.
func (s *Store) DeleteSessionsIdleSince(t time.Time) (int, error) {
	return s.deleteSessions(`DELETE FROM sessions WHERE last_seen_ns < $1`, t.UnixNano())
}

func (s *Store) deleteSessions(sql string, arg any) (int, error) {
	n := 0
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sql, arg)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}
