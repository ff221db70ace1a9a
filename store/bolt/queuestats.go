package bolt

import (
	"encoding/binary"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// QueueStats returns the queue of every server that has had mail queued,
// in server ID order. It reads one read-only transaction and decodes no
// entry: the due time is the first eight bytes of each key.
func (s *Store) QueueStats() ([]store.QueueStat, error) {
	var out []store.QueueStat
	err := s.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		queue := tx.Bucket(bucketQueue)
		return queue.ForEachBucket(func(k []byte) error {
			b := queue.Bucket(k)
			st := store.QueueStat{ServerID: int64(binary.BigEndian.Uint64(k)), Depth: b.Stats().KeyN}
			if first, _ := b.Cursor().First(); len(first) >= 8 {
				st.Earliest = time.Unix(0, int64(binary.BigEndian.Uint64(first[:8])))
			}
			out = append(out, st)
			return nil
		})
	})
	return out, err
}
