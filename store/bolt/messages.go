package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Enqueue stores an accepted message (see store.Accept): its metadata,
// raw MIME, events and queue entry, in one transaction, and returns once
// that transaction is on disk. On error nothing of the message was
// written.
func (s *Store) Enqueue(sub store.Submission) error {
	msg := &sub.Message
	if msg.MessageID == "" || msg.ServerID == 0 {
		return fmt.Errorf("store: enqueue: message without ID or server")
	}
	// Everything that can be encoded is encoded before the transaction:
	// the committer is the one serial step of the intake, and the time it
	// spends is every concurrent client's wait.
	meta, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	events := make([][]byte, len(sub.Events))
	for i, ev := range sub.Events {
		if events[i], err = json.Marshal(ev); err != nil {
			return err
		}
	}
	var entryJSON, entryKey []byte
	if sub.Entry != nil {
		if entryJSON, err = json.Marshal(sub.Entry); err != nil {
			return err
		}
		entryKey = queueKey(*sub.Entry)
	}
	id := []byte(msg.MessageID)
	timeKey := timeIDKey(msg.ReceivedAt, msg.MessageID)
	return s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(msg.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		if err := checkLimits(mail, sub.Limits, msg.ReceivedAt); err != nil {
			return err
		}
		msgs := mail.Bucket(bucketMessages)
		if msgs.Get(id) != nil {
			return fmt.Errorf("store: message %s: %w", msg.MessageID, store.ErrDuplicate)
		}
		if err := msgs.Put(id, meta); err != nil {
			return err
		}
		if err := mail.Bucket(bucketRaw).Put(id, sub.Raw); err != nil {
			return err
		}
		if err := mail.Bucket(bucketByTime).Put(timeKey, nil); err != nil {
			return err
		}
		if err := addStat(mail, msg.ReceivedAt, msg.MessageStream, msg.Tag, store.StatSent); err != nil {
			return err
		}
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
		if entryJSON == nil {
			return nil
		}
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists(itob(msg.ServerID))
		if err != nil {
			return err
		}
		return q.Put(entryKey, entryJSON)
	})
}

// Message returns a message's metadata. A message of another server is
// not found.
func (s *Store) Message(serverID int64, messageID string) (store.Message, error) {
	var m store.Message
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		return getJSON(mail.Bucket(bucketMessages), []byte(messageID), &m)
	})
	return m, err
}

// RawMessage returns a copy of a message's raw MIME.
func (s *Store) RawMessage(serverID int64, messageID string) ([]byte, error) {
	var raw []byte
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		v := mail.Bucket(bucketRaw).Get([]byte(messageID))
		if v == nil {
			return store.ErrNotFound
		}
		raw = bytes.Clone(v)
		return nil
	})
	return raw, err
}

// Messages returns a server's messages, newest first, at most limit.
func (s *Store) Messages(serverID int64, limit int) ([]store.Message, error) {
	var out []store.Message
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		msgs := mail.Bucket(bucketMessages)
		c := mail.Bucket(bucketByTime).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			var m store.Message
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
func (s *Store) Queue(limit int) ([]store.QueueEntry, error) {
	var out []store.QueueEntry
	err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEachBucket(func(k []byte) error {
			c := tx.Bucket(bucketQueue).Bucket(k).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				var e store.QueueEntry
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
func queueKey(e store.QueueEntry) []byte { return timeIDKey(e.Due, e.MessageID) }

// checkLimits counts the server's messages against its limits, in the
// transaction that would file one more received at now.
func checkLimits(mail *bbolt.Bucket, l store.Limits, now time.Time) error {
	if l.PerMinute <= 0 && l.PerDay <= 0 {
		return nil
	}
	lastMinute, today := 0, int64(0)
	if l.PerMinute > 0 {
		lastMinute = countSince(mail, now.Add(-time.Minute), l.PerMinute)
	}
	if l.PerDay > 0 {
		var err error
		if today, err = sentOn(mail, now); err != nil {
			return err
		}
	}
	return l.Check(lastMinute, today)
}
