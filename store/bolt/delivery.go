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

// claimResume is where the last claim's second window in a server's queue
// stopped (nil: nowhere yet). It is a hint kept in memory: after a restart
// the scans start at the head.
func (s *Store) claimResume(serverID int64) []byte {
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	return s.resume[serverID]
}

func (s *Store) setClaimResume(serverID int64, at []byte) {
	s.resumeMu.Lock()
	defer s.resumeMu.Unlock()
	if at == nil {
		delete(s.resume, serverID)
		return
	}
	if s.resume == nil {
		s.resume = map[int64][]byte{}
	}
	s.resume[serverID] = at
}

// Claim leases due entries for delivery, rotating across servers: one
// entry from each server with due mail, then a second from each, and so
// on, so one server's backlog cannot hold back another's message. A
// leased entry comes back due when its lease ends (a worker that dies
// loses nothing); ReleaseLeases hands every lease back at startup.
func (s *Store) Claim(req store.ClaimRequest) ([]store.QueueEntry, error) {
	if req.Max <= 0 {
		return nil, nil
	}
	if req.Lease <= 0 {
		return nil, fmt.Errorf("store: claim without a lease")
	}
	var out []store.QueueEntry
	err := s.update(func(tx *bbolt.Tx) error {
		out = out[:0]
		queue := tx.Bucket(bucketQueue)
		type serverQueue struct {
			id      int64
			b       *bbolt.Bucket
			allowed int
			next    []byte // smallest key not yet looked at
			skipped int    // refused by Take in the current window
			resumed bool   // the second window: from where the last claim stopped
		}
		var servers []*serverQueue
		if err := queue.ForEachBucket(func(k []byte) error {
			id := int64(binary.BigEndian.Uint64(k))
			allowed := req.Max
			if req.Allow != nil {
				allowed = req.Allow(id)
			}
			if allowed > 0 {
				servers = append(servers, &serverQueue{id: id, b: queue.Bucket(k), allowed: allowed})
			}
			return nil
		}); err != nil {
			return err
		}
		// Start after the server that started last time.
		start := 0
		for i, sq := range servers {
			if sq.id > req.After {
				start = i
				break
			}
		}
		servers = append(servers[start:], servers[:start]...)
		due := timeIDKey(req.Now, "\xff")
		for len(out) < req.Max {
			took := false
			for _, sq := range servers {
				if len(out) >= req.Max {
					break
				}
				if sq.allowed == 0 {
					continue
				}
				c := sq.b.Cursor()
				var k, v []byte
				var e store.QueueEntry
				for {
					if sq.next == nil {
						k, v = c.First()
					} else {
						k, v = c.Seek(sq.next)
					}
					// Keys sort by due time, and a leased entry is due
					// when its lease ends: the first key past now ends
					// the scan.
					if k == nil || bytes.Compare(k, due) > 0 {
						k = nil
						break
					}
					e = store.QueueEntry{}
					if err := json.Unmarshal(v, &e); err != nil {
						return fmt.Errorf("store: queue entry %x: %w", k, err)
					}
					sq.next = append(bytes.Clone(k), 0)
					if req.Take == nil || req.Take(e, out) {
						break
					}
					if sq.skipped++; sq.skipped < store.ClaimSkipMax {
						continue
					}
					if !sq.resumed {
						// The head is full of refused entries: go on
						// from where the last claim stopped, if that
						// is further on.
						sq.resumed, sq.skipped = true, 0
						if r := s.claimResume(sq.id); bytes.Compare(r, sq.next) > 0 {
							sq.next = r
						}
						continue
					}
					k = nil
					break
				}
				if sq.resumed {
					// The next claim's second window starts here, or
					// at the head again once this one reached the end.
					var at []byte
					if k != nil || sq.skipped >= store.ClaimSkipMax {
						at = sq.next
					}
					s.setClaimResume(sq.id, at)
				}
				if k == nil {
					sq.allowed = 0 // nothing more to take here
					continue
				}
				if err := c.Delete(); err != nil {
					return err
				}
				e.Due, e.Leased = req.Now.Add(req.Lease), true
				if err := putJSON(sq.b, queueKey(e), e); err != nil {
					return err
				}
				out = append(out, e)
				sq.allowed--
				took = true
			}
			if !took {
				break
			}
		}
		return nil
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
	return s.update(func(tx *bbolt.Tx) error {
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
		events := mail.Bucket(bucketEvents)
		for _, re := range res.Events {
			ev := re.Event
			if re.Bounce != nil {
				if ev.BounceID, err = createBounce(mail, re.Bounce); err != nil {
					return err
				}
			}
			seq, err := events.NextSequence()
			if err != nil {
				return err
			}
			if err := putJSON(events, eventKey(e.MessageID, seq), ev); err != nil {
				return err
			}
		}
		for _, counter := range res.Counters {
			if err := addStat(mail, a.At, msg.MessageStream, msg.Tag, counter); err != nil {
				return err
			}
		}
		suppressed := mail.Bucket(bucketSuppressed)
		for _, sup := range res.Suppressions {
			if err := putJSON(suppressed, []byte(sup.Email), sup); err != nil {
				return err
			}
		}
		if err := putJSON(msgs, []byte(e.MessageID), res.Message); err != nil {
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
