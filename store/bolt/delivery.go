package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

var bucketEvents = []byte("events")

// claimHints are the store.ClaimHints of the claims of this process.
type claimHints struct{ s *Store }

func (h claimHints) Hint(serverID int64) ([]byte, bool) {
	h.s.resumeMu.Lock()
	defer h.s.resumeMu.Unlock()
	at, ok := h.s.resume[serverID]
	return at, ok
}

func (h claimHints) SetHint(serverID int64, at []byte, ok bool) {
	h.s.resumeMu.Lock()
	defer h.s.resumeMu.Unlock()
	if !ok {
		delete(h.s.resume, serverID)
		return
	}
	if h.s.resume == nil {
		h.s.resume = map[int64][]byte{}
	}
	h.s.resume[serverID] = at
}

// claimCursor is a store.ClaimCursor over one server's queue bucket; its
// position is a key.
type claimCursor struct {
	b    *bbolt.Bucket
	due  []byte // keys past it are not due
	next []byte // the smallest key not looked at yet; nil: the head
	last []byte // the key Next returned last
}

func (c *claimCursor) Next() (store.QueueEntry, bool, error) {
	cur := c.b.Cursor()
	var k, v []byte
	if c.next == nil {
		k, v = cur.First()
	} else {
		k, v = cur.Seek(c.next)
	}
	// Keys sort by due time, and a leased entry is due when its lease
	// ends: the first key past now ends the scan.
	if k == nil || bytes.Compare(k, c.due) > 0 {
		return store.QueueEntry{}, false, nil
	}
	var e store.QueueEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return e, false, fmt.Errorf("store: queue entry %x: %w", k, err)
	}
	c.last = bytes.Clone(k)
	c.next = append(bytes.Clone(k), 0)
	return e, true, nil
}

// Lease moves the entry to its new key: due when its lease ends, past
// what this claim scans.
func (c *claimCursor) Lease(e store.QueueEntry) error {
	if err := c.b.Delete(c.last); err != nil {
		return err
	}
	return putJSON(c.b, queueKey(e), e)
}

func (c *claimCursor) Position() []byte { return c.next }

func (c *claimCursor) SkipTo(at []byte) {
	if bytes.Compare(at, c.next) > 0 {
		c.next = at
	}
}

// Claim leases due entries for delivery as store.ClaimEntries decides. A
// leased entry comes back due when its lease ends (a worker that dies
// loses nothing); ReleaseLeases hands every lease back at startup.
func (s *Store) Claim(req store.ClaimRequest) ([]store.QueueEntry, error) {
	if req.Max <= 0 {
		return nil, nil
	}
	var out []store.QueueEntry
	err := s.update(func(tx *bbolt.Tx) error {
		queue := tx.Bucket(bucketQueue)
		var servers []int64
		if err := queue.ForEachBucket(func(k []byte) error {
			servers = append(servers, int64(binary.BigEndian.Uint64(k)))
			return nil
		}); err != nil {
			return err
		}
		due := timeIDKey(req.Now, "\xff")
		var err error
		out, err = store.ClaimEntries(req, servers, func(id int64) store.ClaimCursor[[]byte] {
			return &claimCursor{b: queue.Bucket(itob(id)), due: due}
		}, claimHints{s})
		return err
	})
	return out, err
}

// ReleaseLeases makes every leased entry due at now. Only one process can
// have the store open, so at startup every lease is a dead worker's.
func (s *Store) ReleaseLeases(now time.Time) (int, error) {
	released := 0
	err := s.update(func(tx *bbolt.Tx) error {
		released = 0
		queue := tx.Bucket(bucketQueue)
		return queue.ForEachBucket(func(sk []byte) error {
			b := queue.Bucket(sk)
			var leased []store.QueueEntry
			if err := b.ForEach(func(_, v []byte) error {
				var e store.QueueEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return err
				}
				if e.Leased {
					leased = append(leased, e)
				}
				return nil
			}); err != nil {
				return err
			}
			for _, e := range leased {
				if err := b.Delete(queueKey(e)); err != nil {
					return err
				}
				e.Due, e.Leased = now, false
				if err := putJSON(b, queueKey(e), e); err != nil {
					return err
				}
				released++
			}
			return nil
		})
	})
	return released, err
}

// NextDue returns when the earliest queue entry is due, or false if the
// queue is empty.
func (s *Store) NextDue() (time.Time, bool, error) {
	var next time.Time
	found := false
	err := s.view(func(tx *bbolt.Tx) error {
		queue := tx.Bucket(bucketQueue)
		return queue.ForEachBucket(func(sk []byte) error {
			k, _ := queue.Bucket(sk).Cursor().First()
			if k == nil {
				return nil
			}
			due := time.Unix(0, int64(binary.BigEndian.Uint64(k[:8])))
			if !found || due.Before(next) {
				next, found = due, true
			}
			return nil
		})
	})
	return next, found, err
}

// RecordAttempt stores what store.ResolveAttempt decides attempt a
// changes, in one transaction.
func (s *Store) RecordAttempt(a store.Attempt) error {
	e := a.Entry
	return s.updateBackground(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(e.ServerID))
		queue := tx.Bucket(bucketQueue).Bucket(itob(e.ServerID))
		if mail == nil || queue == nil {
			return store.ErrServerMissing
		}
		if queue.Get(queueKey(e)) == nil {
			return fmt.Errorf("store: queue entry %s (due %s): %w", e.MessageID, e.Due.Format(time.RFC3339Nano), store.ErrNotFound)
		}
		msgs := mail.Bucket(bucketMessages)
		var msg store.Message
		if err := getJSON(msgs, []byte(e.MessageID), &msg); err != nil {
			return err
		}
		res, err := store.ResolveAttempt(msg, a)
		if err != nil {
			return err
		}
		if err := fileResolution(tx, mail, msg, &res, a.At); err != nil {
			return err
		}
		if err := queue.Delete(queueKey(e)); err != nil {
			return err
		}
		if res.Next == nil {
			return nil
		}
		return putJSON(queue, queueKey(*res.Next), *res.Next)
	})
}

// fileResolution persists what a resolution changes of msg: its events,
// with the bounces they file, their webhook calls, the stats, the
// suppressions and the message.
func fileResolution(tx *bbolt.Tx, mail *bbolt.Bucket, msg store.Message, res *store.Resolution, at time.Time) error {
	events := mail.Bucket(bucketEvents)
	for i := range res.Events {
		re := &res.Events[i]
		if re.Bounce != nil {
			var err error
			if re.Event.BounceID, err = createBounce(mail, re.Bounce); err != nil {
				return err
			}
		}
		seq, err := events.NextSequence()
		if err != nil {
			return err
		}
		if err := putJSON(events, eventKey(msg.MessageID, seq), re.Event); err != nil {
			return err
		}
	}
	if err := fileWebhookDeliveries(tx, mail, msg, res.Events, at); err != nil {
		return err
	}
	for _, counter := range res.Counters {
		if err := addStat(mail, at, msg.MessageStream, msg.Tag, counter); err != nil {
			return err
		}
	}
	suppressed := mail.Bucket(bucketSuppressed)
	for _, sup := range res.Suppressions {
		if err := putJSON(suppressed, []byte(sup.Email), sup); err != nil {
			return err
		}
	}
	return putJSON(mail.Bucket(bucketMessages), []byte(msg.MessageID), res.Message)
}

// RecordLateBounce files a bounce or complaint that arrived after the
// attempt, with store.ResolveLateBounce, in one transaction.
func (s *Store) RecordLateBounce(serverID int64, messageID string, o store.Outcome, at time.Time) (store.Bounce, error) {
	var b store.Bounce
	err := s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		var msg store.Message
		if err := getJSON(mail.Bucket(bucketMessages), []byte(messageID), &msg); err != nil {
			return err
		}
		res := store.ResolveLateBounce(msg, o, at)
		if err := fileResolution(tx, mail, msg, &res, at); err != nil {
			return err
		}
		b = *res.Events[0].Bounce
		b.ID = res.Events[0].Event.BounceID
		return nil
	})
	return b, err
}

// Events returns a message's events in the order they happened. A message
// of another server has none.
func (s *Store) Events(serverID int64, messageID string) ([]store.Event, error) {
	var out []store.Event
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		prefix := []byte(messageID)
		c := mail.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, v = c.Next() {
			var ev store.Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

func eventKey(messageID string, seq uint64) []byte {
	k := make([]byte, len(messageID), len(messageID)+8)
	copy(k, messageID)
	return binary.BigEndian.AppendUint64(k, seq)
}
