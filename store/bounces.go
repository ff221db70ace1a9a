package store

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"
)

// Bounce is a recipient's bounce, as Postmark's Bounces API shows it.
//
// IDs are random 53-bit numbers, unique within their server: they fit
// JavaScript's numbers (Postmark's clients read IDs as numbers), and,
// unlike a sequence shared by all servers, they tell a server nothing of
// how much other servers bounce, and no server's ID names another's
// bounce.
// MaxBounceID is the largest bounce ID: IDs fit JavaScript's numbers.
const MaxBounceID = 1<<53 - 1

// NewBounceID is a random bounce ID from 1 to MaxBounceID; its backend
// draws again while the server has it already.
func NewBounceID() int64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails on supported platforms
		if id := int64(binary.BigEndian.Uint64(b[:]) & MaxBounceID); id != 0 {
			return id
		}
	}
}

type Bounce struct {
	ID                int64
	Seq               uint64
	ServerID          int64
	MessageID         string
	Type              string // HardBounce, SoftBounce, ... (EventDetails.BounceType)
	TypeCode          int
	Email             string
	From              string // the message's From address
	Tag               string `json:",omitempty"`
	Subject           string
	MessageStream     string
	BouncedAt         time.Time
	Summary           string // what the bounce means, in words
	Details           string // the remote server's reply
	DestinationServer string `json:",omitempty"`
	// Inactivated: this bounce made the recipient inactive.
	Inactivated bool `json:",omitempty"`

	// Filled when read, never stored:
	// Inactive: the recipient is inactive now because of this bounce
	// (Inactivated, and not reactivated since).
	Inactive bool `json:"-"`
	// DumpAvailable: the message's raw MIME is still kept.
	DumpAvailable bool `json:"-"`
}

// BounceQuery selects a server's bounces. Zero fields do not filter.
type BounceQuery struct {
	Count, Offset int
	Type          string // bounce type name, ignoring case
	Inactive      *bool
	Email         string // part of the address, ignoring case
	Tag           string // ignoring case
	MessageID     string
	From, To      time.Time // BouncedAt, both included
}

func (q BounceQuery) Match(b *Bounce) bool {
	switch {
	case q.Type != "" && !strings.EqualFold(q.Type, b.Type),
		q.Inactive != nil && *q.Inactive != b.Inactive,
		q.Email != "" && !strings.Contains(strings.ToLower(b.Email), strings.ToLower(q.Email)),
		q.Tag != "" && !strings.EqualFold(q.Tag, b.Tag),
		q.MessageID != "" && q.MessageID != b.MessageID,
		!q.From.IsZero() && b.BouncedAt.Before(q.From),
		!q.To.IsZero() && b.BouncedAt.After(q.To):
		return false
	}
	return true
}

// BounceResult is a page of bounces and the number that match.
type BounceResult struct {
	Total   int
	Bounces []Bounce
	// Capped: the listing examined SearchScanLimit bounces and stopped,
	// so Total is a lower bound and the page may be short.
	Capped bool
}
