package store

import "time"

// Session is a person signed in to the console, kept by the hash of the
// random ID its cookie carries, so that a copy of the store signs nobody
// in. When it expires (idle too long, signed out, password changed) is
// the console's rule; the store keeps what it is given.
type Session struct {
	Hash      string // hex SHA-256 of the cookie's 256-bit random ID
	UserID    int64
	AccountID int64  // the account the person works in now
	CSRF      string // the token every form that changes something carries
	CreatedAt time.Time
	LastSeen  time.Time
}

// Sessions keeps the console's sessions.
type Sessions interface {
	// CreateSession files s under s.Hash.
	CreateSession(s Session) error
	// Session returns the session filed under hash (ErrNotFound).
	Session(hash string) (Session, error)
	// UpdateSession replaces a session (its account, when it was last
	// seen); ErrNotFound when it is gone.
	UpdateSession(s Session) error
	// DeleteSession removes one session; a missing one is no error.
	DeleteSession(hash string) error
	// DeleteUserSessions removes every session of a user (a password
	// changed) and returns how many there were.
	DeleteUserSessions(userID int64) (int, error)
	// DeleteSessionsIdleSince removes every session last seen before t
	// and returns how many there were.
	DeleteSessionsIdleSince(t time.Time) (int, error)
}
