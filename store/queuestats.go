package store

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// QueueStat is one server's delivery queue at a moment, for metrics.
type QueueStat struct {
	ServerID int64
	// Depth is how many messages have recipients still to deliver,
	// leased ones (being delivered now) included.
	Depth int
	// Earliest is the due time of the entry due first, zero when the
	// queue is empty. A leased entry is due when its lease ends, so an
	// Earliest in the past is mail that waits for a worker: how long it
	// has waited is what tells a queue that backs up.
	Earliest time.Time
}

// QueueStats returns the queue of every server that has had mail queued,
// in server ID order. It reads one read-only transaction and decodes no
// entry: the due time is the first eight bytes of each key.
func (s *Store) QueueStats() ([]QueueStat, error) {
	var out []QueueStat
	err := s.view(func(tx *bolt.Tx) error {
		out = out[:0]
		queue := tx.Bucket(bucketQueue)
		return queue.ForEachBucket(func(k []byte) error {
			b := queue.Bucket(k)
			st := QueueStat{ServerID: int64(binary.BigEndian.Uint64(k)), Depth: b.Stats().KeyN}
			if first, _ := b.Cursor().First(); len(first) >= 8 {
				st.Earliest = time.Unix(0, int64(binary.BigEndian.Uint64(first[:8])))
			}
			out = append(out, st)
			return nil
		})
	})
	return out, err
}
