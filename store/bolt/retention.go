package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// PurgeExpired deletes, server by server, the messages received before
// now less the server's retention: each message's metadata, raw MIME,
// time index entry and events, and its bounces with their ID index
// entries. It works in transactions that each look at no more than batch
// messages (DefaultPurgeBatch if batch <= 0), so intake, which shares the
// store's writer, never waits long. It returns how many messages it
// deleted.
//
// What stays:
//   - a message still queued for delivery (a recipient still pending):
//     it is purged by the first run after its delivery ends, which the
//     relay's maximum lifetime bounds;
//   - the daily stats, which cover a server's whole life;
//   - suppressions (inactive recipients), and the bounce that made a
//     recipient inactive while it still does: it is the handle to
//     reactivate the recipient (PUT /bounces/{id}/activate).
//
// It stops between two transactions once ctx is done, returning ctx's
// error: a long purge (the first after an upgrade, say) does not hold up
// a shutdown.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = store.DefaultPurgeBatch
	}
	retention := map[int64]int{}
	var ids []int64
	if err := s.view(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketServers).ForEach(func(k, v []byte) error {
			var srv store.Server
			if err := json.Unmarshal(v, &srv); err != nil {
				return fmt.Errorf("store: server %x: %w", k, err)
			}
			ids = append(ids, srv.ID)
			retention[srv.ID] = srv.Retention()
			return nil
		})
	}); err != nil {
		return 0, err
	}
	total := 0
	for _, id := range ids {
		cutoff := now.Add(-time.Duration(retention[id]) * 24 * time.Hour)
		n, err := s.purgeServer(ctx, id, cutoff, batch)
		total += n
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return total, err
		}
		if err != nil {
			return total, fmt.Errorf("store: purging server %d: %w", id, err)
		}
	}
	return total, nil
}

// purgeServer purges one server's messages received before cutoff, batch
// index entries per transaction.
func (s *Store) purgeServer(ctx context.Context, serverID int64, cutoff time.Time, batch int) (int, error) {
	low := timeIDKey(cutoff, "")
	total := 0
	var from []byte // the smallest index key not looked at yet
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var purged, seen int
		var next []byte
		err := s.update(func(tx *bbolt.Tx) error {
			// The committer may run this more than once: start afresh.
			purged, seen, next = 0, 0, nil
			mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
			if mail == nil {
				return nil // deleted since the list was read
			}
			msgs := mail.Bucket(bucketMessages)
			c := mail.Bucket(bucketByTime).Cursor()
			k, _ := c.First()
			if from != nil {
				k, _ = c.Seek(from)
			}
			// Collect first, delete after: deleting under a cursor
			// can make it skip keys.
			var expired [][]byte
			for ; k != nil && seen < batch && bytes.Compare(k, low) < 0; k, _ = c.Next() {
				seen++
				next = append(bytes.Clone(k), 0)
				var m struct{ Status string }
				if v := msgs.Get(k[8:]); v != nil {
					if err := json.Unmarshal(v, &m); err != nil {
						return fmt.Errorf("message %s: %w", k[8:], err)
					}
				}
				if m.Status == store.StatusQueued {
					continue // still being delivered: kept for now
				}
				expired = append(expired, bytes.Clone(k))
			}
			for _, key := range expired {
				if err := purgeMessage(mail, key); err != nil {
					return err
				}
				purged++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += purged
		if seen < batch {
			return total, nil
		}
		from = next
	}
}

// purgeMessage deletes the message whose time index key is key, inside a
// write transaction on its server's mail bucket.
func purgeMessage(mail *bbolt.Bucket, key []byte) error {
	id := key[8:]
	events := mail.Bucket(bucketEvents)
	var eventKeys [][]byte
	c := events.Cursor()
	for k, v := c.Seek(id); k != nil && bytes.HasPrefix(k, id); k, v = c.Next() {
		if len(k) != len(id)+8 {
			continue
		}
		eventKeys = append(eventKeys, bytes.Clone(k))
		var ev store.Event
		if err := json.Unmarshal(v, &ev); err != nil {
			return fmt.Errorf("event %x: %w", k, err)
		}
		if ev.Type == store.EventBounced && ev.BounceID != 0 {
			if err := purgeBounce(mail, ev.BounceID); err != nil {
				return err
			}
		}
	}
	for _, k := range eventKeys {
		if err := events.Delete(k); err != nil {
			return err
		}
	}
	if err := mail.Bucket(bucketMessages).Delete(id); err != nil {
		return err
	}
	if err := mail.Bucket(bucketRaw).Delete(id); err != nil {
		return err
	}
	return mail.Bucket(bucketByTime).Delete(key)
}

// purgeBounce deletes a bounce and its ID index entry, unless it is what
// keeps its recipient inactive now.
func purgeBounce(mail *bbolt.Bucket, id int64) error {
	ids, bounces := mail.Bucket(bucketBounceIDs), mail.Bucket(bucketBounces)
	if ids == nil || bounces == nil {
		return nil
	}
	seq := ids.Get(itob(id))
	if seq == nil {
		return nil
	}
	seq = bytes.Clone(seq)
	var b store.Bounce
	if err := getJSON(bounces, seq, &b); err != nil {
		return fmt.Errorf("bounce %d: %w", id, err)
	}
	if b.Inactivated {
		if sup := mail.Bucket(bucketSuppressed); sup != nil {
			var sp store.Suppression
			if getJSON(sup, []byte(strings.ToLower(b.Email)), &sp) == nil && sp.MessageID == b.MessageID {
				return nil
			}
		}
	}
	if err := bounces.Delete(seq); err != nil {
		return err
	}
	return ids.Delete(itob(id))
}
