// Package store defines what Postern persists, the rules about it, and the
// role interfaces a storage backend implements (see backend.go).
package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"
)

// Errors callers branch on.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrInitialized   = errors.New("store: already initialised")
	ErrClosed        = errors.New("store: closed")
	ErrServerMissing = errors.New("store: server does not exist")
	ErrDuplicate     = errors.New("store: already exists")
	ErrCapReached    = errors.New("store: cap reached")
	// ErrNotEmpty refuses to import into a backend that holds data.
	ErrNotEmpty = errors.New("store: the target is not empty")
)

// Caps bound a tenant's growth. They are checked in the transaction that
// creates the thing, so concurrent creations cannot overshoot them.
type Caps struct {
	DomainsPerAccount int // max-domains-per-account
	ServersPerAccount int // max-servers-per-account
	TokensPerServer   int // max-tokens-per-server
}

// CapError is the refusal of a creation past one of the Caps.
type CapError struct {
	Setting string // the cap's setting, e.g. "max-domains-per-account"
	What    string // what is counted, e.g. "domains"
	Limit   int
}

func (e *CapError) Error() string {
	return fmt.Sprintf("the limit of %d %s (%s) is reached", e.Limit, e.What, e.Setting)
}

// Unwrap lets callers test for ErrCapReached.
func (e *CapError) Unwrap() error { return ErrCapReached }

// NewMessageID returns a new MessageID: a UUID, as Postmark's are, of
// version 7 (RFC 9562), whose leading bits are the time. Time-ordered keys
// make each new message an append to its buckets' last pages, so a commit
// rewrites a few pages instead of one random page per message. Within a
// millisecond the sub-millisecond clock fills rand_a (RFC 9562 §6.2,
// method 3); the last 62 bits are random.
func NewMessageID() string {
	return MessageIDAt(time.Now())
}

// MessageIDAt is NewMessageID for a given time of receipt.
func MessageIDAt(t time.Time) string {
	var b [16]byte
	// crypto/rand.Read never returns an error on supported platforms.
	_, _ = rand.Read(b[6:])
	ms := uint64(t.UnixMilli())
	sub := uint64(t.Nanosecond()%1_000_000) * 4096 / 1_000_000 // 12 bits
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = 0x70 | byte(sub>>8)
	b[7] = byte(sub)
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
