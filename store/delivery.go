package store

import (
	"time"
)

// Message statuses once delivery has begun.
const (
	StatusSent    = "Sent"           // every recipient delivered
	StatusBounced = "Bounced"        // every recipient bounced
	StatusPartial = "Partially sent" // some delivered, some bounced
)

// Event types, as Postmark's MessageEvents name them.
const (
	EventDelivered = "Delivered"
	EventTransient = "Transient"
	EventBounced   = "Bounced"
)

// Event is one thing that happened to one recipient of a message.
type Event struct {
	MessageID  string
	Recipient  string
	Type       string // EventDelivered, EventTransient or EventBounced
	ReceivedAt time.Time
	Details    EventDetails
	BounceID   int64 `json:",omitempty"` // for EventBounced: the Bounce it filed
}

// EventDetails are an event's particulars, in Postmark's field names where
// Postmark has them.
type EventDetails struct {
	DeliveryMessage   string `json:",omitempty"` // the remote server's reply
	DestinationServer string `json:",omitempty"`
	DestinationIP     string `json:",omitempty"`
	TLS               string `json:",omitempty"` // TLS version used, empty without TLS
	TLSCipher         string `json:",omitempty"` // the cipher suite, empty without TLS
	// TLSPolicy is what the session was held to: none (plaintext),
	// opportunistic, mta-sts or dane; empty when no server was reached.
	TLSPolicy      string `json:",omitempty"`
	TLSVerified    bool   `json:",omitempty"` // the server's certificate verified
	Summary        string `json:",omitempty"` // for bounces: why, in words
	BounceType     string `json:",omitempty"` // e.g. HardBounce
	BounceTypeCode int    `json:",omitempty"`
	Signed         string `json:",omitempty"` // DKIM: the signing domain, or why unsigned
}

// Outcome is what one attempt did for one recipient.
type Outcome struct {
	Recipient string
	Type      string // EventDelivered, EventTransient or EventBounced
	Details   EventDetails
	// Inactivate suppresses the recipient for the message's server (a hard
	// bounce, say): later RCPTs for it on that server are refused.
	Inactivate bool
}

// Attempt records one delivery attempt of a claimed queue entry.
type Attempt struct {
	Entry    QueueEntry // as returned by Claim
	At       time.Time
	Outcomes []Outcome
	// Retry is when recipients with a Transient outcome are tried again.
	Retry time.Time
	// Signature, when Entry was not signed yet, is kept for the retries.
	Signature []byte
	Signed    bool
}

// ClaimRequest says what a scheduler wants from the queue.
type ClaimRequest struct {
	Now   time.Time
	Lease time.Duration // how long a claimed entry stays with the claimer
	Max   int           // most entries in all
	// Allow says how many more entries a server may be given now (its
	// concurrency cap less what it has in flight). Nil: no cap.
	Allow func(serverID int64) int
	// After is the server the previous claim started with: this one
	// starts with the next, so every server gets its turn first.
	After int64
	// Take, when set, says whether a due entry may be claimed, given
	// those this claim has taken so far (the claimer's destinations may
	// be at their caps). A refused entry stays due and unleased, and the
	// scan of its server goes on past it (see ClaimSkipMax). Take may run
	// more than once for an entry (the transaction can be retried), so it
	// must decide from its arguments and the claimer's state, not count
	// calls.
	Take func(e QueueEntry, taken []QueueEntry) bool
}

// ClaimSkipMax bounds the entries Take may refuse in one server's queue at
// one claim, in each of two windows: the head of the queue, where the
// oldest mail is, and the place the previous claim's scan of that server
// stopped, so that a backlog for a full destination does not hide the
// server's mail for others behind it (each claim looks further, and
// comes back to the head at the end), and costs a bounded scan, with no
// writes, at every claim.
const ClaimSkipMax = 16
