package store

import (
	"time"
)

// Message statuses.
const (
	StatusQueued = "Queued"
)

// Address is a mailbox as written in a header: an address and a display name.
type Address struct {
	Email string
	Name  string `json:",omitempty"`
}

// Message is the metadata of one accepted message. Its raw MIME is stored
// beside it and read with RawMessage.
type Message struct {
	MessageID     string // UUID; also the key
	ServerID      int64
	EnvelopeFrom  string
	From          string // the From header as sent, decoded
	To            []Address
	Cc            []Address
	Bcc           []Address
	Recipients    []string // envelope recipients: where the message goes
	Subject       string
	Tag           string            `json:",omitempty"`
	Metadata      map[string]string `json:",omitempty"`
	MessageStream string
	ReceivedAt    time.Time
	Size          int
	Status        string
	// Attachments are the file names of the message's attachments, read
	// from its MIME at Enqueue so listings need not read bodies.
	Attachments []string `json:",omitempty"`
	// RecipientStatus is each recipient's final event type (Delivered or
	// Bounced) once it has one.
	RecipientStatus map[string]string `json:",omitempty"`
}

// QueueEntry is a message with recipients still to deliver. Each server
// has its own queue, ordered by Due, so a scheduler can rotate across
// servers without reading one server's backlog to find another's mail.
type QueueEntry struct {
	Due       time.Time // when to try next; while leased, when the lease ends
	ServerID  int64
	MessageID string
	Pending   []string // recipients not yet delivered or bounced
	Attempts  int      // attempts made so far
	Leased    bool     // claimed by a worker until Due
	// Signature holds the DKIM header fields made at the first attempt,
	// so a retried message is not signed again.
	Signature []byte `json:",omitempty"`
	Signed    bool   `json:",omitempty"` // signing was done (Signature may be empty: no key)
}
