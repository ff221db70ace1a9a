package bolt

import (
	"fmt"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Defer hands a claimed entry back to the queue, unleased and due at due,
// as if it had not been claimed: no attempt is counted, no event
// recorded, the message's status is untouched. The relay uses it for an
// entry it could not start (its destination is at its concurrency cap),
// so that waiting does not hold a worker. e is the entry as Claim
// returned it; if its lease has since ended and it was claimed again,
// Defer fails with ErrNotFound and changes nothing.
func (s *Store) Defer(e store.QueueEntry, due time.Time) error {
	return s.update(func(tx *bbolt.Tx) error {
		queue := tx.Bucket(bucketQueue).Bucket(itob(e.ServerID))
		if queue == nil {
			return store.ErrServerMissing
		}
		key := queueKey(e)
		if queue.Get(key) == nil {
			return fmt.Errorf("store: queue entry %s (due %s): %w", e.MessageID, e.Due.Format(time.RFC3339Nano), store.ErrNotFound)
		}
		if err := queue.Delete(key); err != nil {
			return err
		}
		next := e
		next.Due, next.Leased = due, false
		return putJSON(queue, queueKey(next), next)
	})
}
