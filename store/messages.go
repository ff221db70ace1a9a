package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
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

// Enqueue stores a message, its raw MIME and its queue entry in one
// transaction and returns once that transaction is on disk. On error
// nothing of the message was written. A Sandbox server's message gets no
// queue entry: it is recorded as delivered to every recipient in the same
// transaction, since its outcome is known at once (and so costs one
// commit, not the three of a claim and a recorded attempt).
func (s *Store) Enqueue(msg *Message, raw []byte) error {
	if msg.MessageID == "" || msg.ServerID == 0 {
		return fmt.Errorf("store: enqueue: message without ID or server")
	}
	if msg.Attachments == nil {
		msg.Attachments = attachmentNames(raw)
	}
	// Everything that can be encoded is encoded before the transaction:
	// the committer is the one serial step of the intake, and the time it
	// spends is every concurrent client's wait. A server's DeliveryType is
	// set at creation only, so it can be read first.
	srv, err := s.Server(msg.ServerID)
	if errors.Is(err, ErrNotFound) {
		return ErrServerMissing
	}
	if err != nil {
		return err
	}
	stored := *msg
	var events [][]byte
	if srv.DeliveryType == DeliverySandbox {
		if events, err = sandboxEvents(&stored); err != nil {
			return err
		}
	}
	meta, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	entry := QueueEntry{Due: msg.ReceivedAt, ServerID: msg.ServerID, MessageID: msg.MessageID, Pending: msg.Recipients}
	entryJSON, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	id := []byte(msg.MessageID)
	timeKey := timeIDKey(msg.ReceivedAt, msg.MessageID)
	queueKey := queueKey(entry)
	return s.update(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(msg.ServerID))
		if mail == nil {
			return ErrServerMissing
		}
		msgs := mail.Bucket(bucketMessages)
		if msgs.Get(id) != nil {
			return fmt.Errorf("store: message %s: %w", msg.MessageID, ErrDuplicate)
		}
		if err := msgs.Put(id, meta); err != nil {
			return err
		}
		if err := mail.Bucket(bucketRaw).Put(id, raw); err != nil {
			return err
		}
		if err := mail.Bucket(bucketByTime).Put(timeKey, nil); err != nil {
			return err
		}
		if err := addStat(mail, msg.ReceivedAt, msg.MessageStream, msg.Tag, StatSent); err != nil {
			return err
		}
		if events != nil {
			b := mail.Bucket(bucketEvents)
			for _, ev := range events {
				seq, err := b.NextSequence()
				if err != nil {
					return err
				}
				if err := b.Put(eventKey(msg.MessageID, seq), ev); err != nil {
					return err
				}
			}
			return nil
		}
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists(itob(msg.ServerID))
		if err != nil {
			return err
		}
		return q.Put(queueKey, entryJSON)
	})
}

// Message returns a message's metadata. A message of another server is
// not found.
func (s *Store) Message(serverID int64, messageID string) (Message, error) {
	var m Message
	err := s.view(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
		}
		return getJSON(mail.Bucket(bucketMessages), []byte(messageID), &m)
	})
	return m, err
}

// RawMessage returns a copy of a message's raw MIME.
func (s *Store) RawMessage(serverID int64, messageID string) ([]byte, error) {
	var raw []byte
	err := s.view(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
		}
		v := mail.Bucket(bucketRaw).Get([]byte(messageID))
		if v == nil {
			return ErrNotFound
		}
		raw = bytes.Clone(v)
		return nil
	})
	return raw, err
}

// Messages returns a server's messages, newest first, at most limit.
func (s *Store) Messages(serverID int64, limit int) ([]Message, error) {
	var out []Message
	err := s.view(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
		}
		msgs := mail.Bucket(bucketMessages)
		c := mail.Bucket(bucketByTime).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			var m Message
			if err := getJSON(msgs, k[8:], &m); err != nil {
				return fmt.Errorf("store: index entry %x: %w", k, err)
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// Queue returns the queue entries of every server in due order, at most
// limit.
func (s *Store) Queue(limit int) ([]QueueEntry, error) {
	var out []QueueEntry
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEachBucket(func(k []byte) error {
			c := tx.Bucket(bucketQueue).Bucket(k).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				var e QueueEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				out = append(out, e)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Due.Before(out[j].Due) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, err
}

// timeIDKey orders a server's messages by time of receipt.
func timeIDKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, id...)
}

// queueKey orders a server's queue by due time, then message.
func queueKey(e QueueEntry) []byte { return timeIDKey(e.Due, e.MessageID) }

// sandboxDelivery is the DeliveryMessage of a Sandbox server's events.
const sandboxDelivery = "Sandbox server: recorded as delivered; nothing was sent"

// sandboxEvents marks a Sandbox server's message delivered to every
// recipient, and returns the encoded Delivered event of each.
func sandboxEvents(m *Message) ([][]byte, error) {
	m.Status = StatusSent
	m.RecipientStatus = make(map[string]string, len(m.Recipients))
	events := make([][]byte, 0, len(m.Recipients))
	for _, r := range m.Recipients {
		m.RecipientStatus[r] = EventDelivered
		ev, err := json.Marshal(Event{MessageID: m.MessageID, Recipient: r, Type: EventDelivered, ReceivedAt: m.ReceivedAt,
			Details: EventDetails{DeliveryMessage: sandboxDelivery}})
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}
