package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// CreateUser files u with a new ID.
func (s *Store) CreateUser(u store.User) (store.User, error) {
	u.Email = strings.ToLower(u.Email)
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO users (email, doc) VALUES ($1, '{}') RETURNING id`, u.Email).Scan(&u.ID); err != nil {
			if isUnique(err, "") {
				return store.ErrUserExists
			}
			return err
		}
		doc, err := marshal(u)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE users SET doc = $2 WHERE id = $1`, u.ID, doc)
		return err
	})
	return u, err
}

// User returns a user.
func (s *Store) User(id int64) (store.User, error) {
	var u store.User
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &u, `SELECT doc FROM users WHERE id = $1`, id)
	})
	return u, err
}

// UserByEmail finds a user by email, ignoring case.
func (s *Store) UserByEmail(email string) (store.User, error) {
	var u store.User
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &u, `SELECT doc FROM users WHERE email = $1`, strings.ToLower(email))
	})
	return u, err
}

// UpdateUser replaces a user; its email stays.
func (s *Store) UpdateUser(u store.User) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		var old store.User
		if err := getDoc(ctx, tx, &old, `SELECT doc FROM users WHERE id = $1 FOR UPDATE`, u.ID); err != nil {
			return err
		}
		u.Email = old.Email
		doc, err := marshal(u)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE users SET doc = $2 WHERE id = $1`, u.ID, doc)
		return err
	})
}

// lockedMembers reads an account's memberships, locking the account so
// that two changes of its Owners run one after the other.
func lockedMembers(ctx context.Context, tx pgx.Tx, accountID int64) ([]store.Membership, error) {
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&one); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, store.ErrNotFound
		}
		return nil, err
	}
	return docs[store.Membership](ctx, tx, `SELECT doc FROM memberships WHERE account_id = $1 ORDER BY user_id`, accountID)
}

// SetMembership creates or replaces a membership.
func (s *Store) SetMembership(m store.Membership) error {
	if err := store.CheckMembership(m); err != nil {
		return err
	}
	doc, err := marshal(m)
	if err != nil {
		return err
	}
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		members, err := lockedMembers(ctx, tx, m.AccountID)
		if err != nil {
			return err
		}
		if err := store.KeepsAnOwner(members, m.UserID, &m); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO memberships (account_id, user_id, doc) VALUES ($1, $2, $3)
			ON CONFLICT (account_id, user_id) DO UPDATE SET doc = excluded.doc`, m.AccountID, m.UserID, doc)
		if isForeignKey(err) {
			return store.ErrNotFound
		}
		return err
	})
}

// RemoveMembership removes a user from an account only.
func (s *Store) RemoveMembership(accountID, userID int64) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		members, err := lockedMembers(ctx, tx, accountID)
		if err != nil {
			return err
		}
		if err := store.KeepsAnOwner(members, userID, nil); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM memberships WHERE account_id = $1 AND user_id = $2`, accountID, userID)
		if err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// Memberships returns a user's memberships, by account.
func (s *Store) Memberships(userID int64) ([]store.Membership, error) {
	return viewDocs[store.Membership](s, `SELECT doc FROM memberships WHERE user_id = $1 ORDER BY account_id`, userID)
}

// AccountMembers returns an account's memberships, by user.
func (s *Store) AccountMembers(accountID int64) ([]store.Membership, error) {
	return viewDocs[store.Membership](s, `SELECT doc FROM memberships WHERE account_id = $1 ORDER BY user_id`, accountID)
}

// AddSignInToken keeps a one-time sign-in token.
func (s *Store) AddSignInToken(t store.SignInToken) error {
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO signin_tokens (hash, user_id, expires_ns) VALUES ($1, $2, $3)`, t.Hash, t.UserID, t.Expires.UnixNano())
	err := s.batch(b)
	if isForeignKey(err) {
		return store.ErrNotFound
	}
	return err
}

// TakeSignInToken uses a token once.
func (s *Store) TakeSignInToken(hash string, now time.Time) (store.SignInToken, error) {
	t := store.SignInToken{Hash: hash}
	var expires int64
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `DELETE FROM signin_tokens WHERE hash = $1 RETURNING user_id, expires_ns`, hash).Scan(&t.UserID, &expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.SignInToken{}, err
	}
	t.Expires = time.Unix(0, expires)
	if !now.Before(t.Expires) {
		return store.SignInToken{}, store.ErrNotFound
	}
	return t, nil
}

// Mark records key once.
func (s *Store) Mark(key string, at time.Time) (bool, error) {
	first := false
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO marks (key, at_ns) VALUES ($1, $2) ON CONFLICT DO NOTHING`, key, at.UnixNano())
		first = tag.RowsAffected() == 1
		return err
	})
	return first, err
}
