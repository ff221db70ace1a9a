package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

var (
	// ID → User; email → ID; account ID + user ID → Membership; user ID +
	// account ID → empty; token hash → SignInToken.
	bucketUsers           = []byte("users")
	bucketUserEmails      = []byte("useremails")
	bucketMemberships     = []byte("memberships")
	bucketUserMemberships = []byte("usermemberships")
	bucketSignInTokens    = []byte("signintokens")
)

func pairKey(a, b int64) []byte {
	return binary.BigEndian.AppendUint64(itob(a), uint64(b))
}

// CreateUser files u with a new ID.
func (s *Store) CreateUser(u store.User) (store.User, error) {
	u.Email = strings.ToLower(u.Email)
	err := s.update(func(tx *bbolt.Tx) error {
		emails := tx.Bucket(bucketUserEmails)
		if emails.Get([]byte(u.Email)) != nil {
			return store.ErrUserExists
		}
		users := tx.Bucket(bucketUsers)
		id, err := users.NextSequence()
		if err != nil {
			return err
		}
		u.ID = int64(id)
		if err := emails.Put([]byte(u.Email), itob(u.ID)); err != nil {
			return err
		}
		return putJSON(users, itob(u.ID), u)
	})
	return u, err
}

// User returns a user.
func (s *Store) User(id int64) (store.User, error) {
	var u store.User
	err := s.view(func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketUsers), itob(id), &u) })
	return u, err
}

// UserByEmail finds a user by email, ignoring case.
func (s *Store) UserByEmail(email string) (store.User, error) {
	var u store.User
	err := s.view(func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketUserEmails).Get([]byte(strings.ToLower(email)))
		if id == nil {
			return store.ErrNotFound
		}
		return getJSON(tx.Bucket(bucketUsers), id, &u)
	})
	return u, err
}

// UpdateUser replaces a user.
func (s *Store) UpdateUser(u store.User) error {
	return s.update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var old store.User
		if err := getJSON(users, itob(u.ID), &old); err != nil {
			return err
		}
		u.Email = old.Email // the email names the user; it does not change here
		return putJSON(users, itob(u.ID), u)
	})
}

func accountMembers(tx *bbolt.Tx, accountID int64) ([]store.Membership, error) {
	var out []store.Membership
	prefix := itob(accountID)
	c := tx.Bucket(bucketMemberships).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var m store.Membership
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// SetMembership creates or replaces a membership.
func (s *Store) SetMembership(m store.Membership) error {
	if err := store.CheckMembership(m); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get(itob(m.UserID)) == nil || tx.Bucket(bucketAccounts).Get(itob(m.AccountID)) == nil {
			return store.ErrNotFound
		}
		members, err := accountMembers(tx, m.AccountID)
		if err != nil {
			return err
		}
		if err := store.KeepsAnOwner(members, m.UserID, &m); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserMemberships).Put(pairKey(m.UserID, m.AccountID), nil); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketMemberships), pairKey(m.AccountID, m.UserID), m)
	})
}

// RemoveMembership removes a user from an account only.
func (s *Store) RemoveMembership(accountID, userID int64) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketMemberships)
		if b.Get(pairKey(accountID, userID)) == nil {
			return store.ErrNotFound
		}
		members, err := accountMembers(tx, accountID)
		if err != nil {
			return err
		}
		if err := store.KeepsAnOwner(members, userID, nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserMemberships).Delete(pairKey(userID, accountID)); err != nil {
			return err
		}
		return b.Delete(pairKey(accountID, userID))
	})
}

// Memberships returns a user's memberships, by account.
func (s *Store) Memberships(userID int64) ([]store.Membership, error) {
	var out []store.Membership
	err := s.view(func(tx *bbolt.Tx) error {
		prefix := itob(userID)
		c := tx.Bucket(bucketUserMemberships).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var m store.Membership
			if err := getJSON(tx.Bucket(bucketMemberships), pairKey(int64(binary.BigEndian.Uint64(k[8:])), userID), &m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// AccountMembers returns an account's memberships, by user.
func (s *Store) AccountMembers(accountID int64) ([]store.Membership, error) {
	var out []store.Membership
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = accountMembers(tx, accountID)
		return err
	})
	return out, err
}

// AddSignInToken keeps a one-time sign-in token.
func (s *Store) AddSignInToken(t store.SignInToken) error {
	return s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get(itob(t.UserID)) == nil {
			return store.ErrNotFound
		}
		return putJSON(tx.Bucket(bucketSignInTokens), []byte(t.Hash), t)
	})
}

// TakeSignInToken uses a token once.
func (s *Store) TakeSignInToken(hash string, now time.Time) (store.SignInToken, error) {
	var t store.SignInToken
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketSignInTokens)
		if err := getJSON(b, []byte(hash), &t); err != nil {
			return err
		}
		return b.Delete([]byte(hash)) // used, or expired: gone either way
	})
	if err == nil && !now.Before(t.Expires) {
		return store.SignInToken{}, store.ErrNotFound
	}
	return t, err
}

// deleteMemberships drops a deleted account's memberships; the users
// stay, with their other accounts.
func deleteMemberships(tx *bbolt.Tx, accountID int64) error {
	members, err := accountMembers(tx, accountID)
	if err != nil {
		return err
	}
	for _, m := range members {
		if err := tx.Bucket(bucketUserMemberships).Delete(pairKey(m.UserID, accountID)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMemberships).Delete(pairKey(accountID, m.UserID)); err != nil {
			return err
		}
	}
	return nil
}

// Key → the time it was marked (8 bytes, Unix nanoseconds).
var bucketMarks = []byte("marks")

// Mark records key once.
func (s *Store) Mark(key string, at time.Time) (bool, error) {
	first := false
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketMarks)
		first = b.Get([]byte(key)) == nil
		if !first {
			return nil
		}
		return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())))
	})
	return first, err
}
