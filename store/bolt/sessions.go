package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

var (
	// Hash → Session; user ID + hash → empty, so that a user's
	// sessions go without a scan of every session.
	bucketSessions     = []byte("sessions")
	bucketUserSessions = []byte("usersessions")
)

func userSessionKey(userID int64, hash string) []byte {
	return append(itob(userID), hash...)
}

// sessionTimes keeps a session's times in UTC, as both backends return
// them.
func sessionTimes(s store.Session) store.Session {
	s.CreatedAt, s.LastSeen = s.CreatedAt.UTC(), s.LastSeen.UTC()
	return s
}

// CreateSession files a session under its hash, for an existing user
// and account (ErrNotFound); a hash already filed is ErrDuplicate.
func (s *Store) CreateSession(sess store.Session) error {
	return s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get(itob(sess.UserID)) == nil || tx.Bucket(bucketAccounts).Get(itob(sess.AccountID)) == nil {
			return store.ErrNotFound
		}
		b := tx.Bucket(bucketSessions)
		if b.Get([]byte(sess.Hash)) != nil {
			return store.ErrDuplicate
		}
		if err := tx.Bucket(bucketUserSessions).Put(userSessionKey(sess.UserID, sess.Hash), nil); err != nil {
			return err
		}
		return putJSON(b, []byte(sess.Hash), sessionTimes(sess))
	})
}

// Session returns the session filed under hash.
func (s *Store) Session(hash string) (store.Session, error) {
	var sess store.Session
	err := s.view(func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketSessions), []byte(hash), &sess) })
	return sess, err
}

// UpdateSession replaces a session's account, CSRF token and last
// sight; its user and creation stay.
func (s *Store) UpdateSession(sess store.Session) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		var old store.Session
		if err := getJSON(b, []byte(sess.Hash), &old); err != nil {
			return err
		}
		if tx.Bucket(bucketAccounts).Get(itob(sess.AccountID)) == nil {
			return store.ErrNotFound
		}
		sess.UserID, sess.CreatedAt = old.UserID, old.CreatedAt
		return putJSON(b, []byte(sess.Hash), sessionTimes(sess))
	})
}

// deleteSession removes a session and its index entry.
func deleteSession(tx *bbolt.Tx, sess store.Session) error {
	if err := tx.Bucket(bucketUserSessions).Delete(userSessionKey(sess.UserID, sess.Hash)); err != nil {
		return err
	}
	return tx.Bucket(bucketSessions).Delete([]byte(sess.Hash))
}

// DeleteSession removes one session; a missing one is no error.
func (s *Store) DeleteSession(hash string) error {
	return s.update(func(tx *bbolt.Tx) error {
		var sess store.Session
		if err := getJSON(tx.Bucket(bucketSessions), []byte(hash), &sess); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		return deleteSession(tx, sess)
	})
}

// DeleteUserSessions removes every session of a user, through the
// index.
func (s *Store) DeleteUserSessions(userID int64) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		n = 0
		prefix := itob(userID)
		var keys [][]byte
		c := tx.Bucket(bucketUserSessions).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		sessions, index := tx.Bucket(bucketSessions), tx.Bucket(bucketUserSessions)
		for _, k := range keys {
			if sessions.Get(k[8:]) != nil {
				if err := sessions.Delete(k[8:]); err != nil {
					return err
				}
				n++
			}
			if err := index.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// deleteSessionsWhere removes every session goes picks, scanning them
// all, and returns how many.
func deleteSessionsWhere(tx *bbolt.Tx, goes func(store.Session) bool) (int, error) {
	var gone []store.Session
	err := tx.Bucket(bucketSessions).ForEach(func(_, v []byte) error {
		var sess store.Session
		if err := json.Unmarshal(v, &sess); err != nil {
			return err
		}
		if goes(sess) {
			gone = append(gone, sess)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, sess := range gone {
		if err := deleteSession(tx, sess); err != nil {
			return 0, err
		}
	}
	return len(gone), nil
}

// DeleteSessionsIdleSince removes every session last seen before t.
func (s *Store) DeleteSessionsIdleSince(t time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		var err error
		n, err = deleteSessionsWhere(tx, func(sess store.Session) bool { return sess.LastSeen.Before(t) })
		return err
	})
	return n, err
}

// deleteAccountSessions drops the sessions working in a deleted account,
// as PostgreSQL's cascade does.
func deleteAccountSessions(tx *bbolt.Tx, accountID int64) error {
	_, err := deleteSessionsWhere(tx, func(sess store.Session) bool { return sess.AccountID == accountID })
	return err
}
