package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// SearchMessages returns the number of a server's messages that match q
// and the page of them that q asks for, newest first. It walks the
// server's time index from q.To back to q.From, in read transactions of
// scanChunk entries, and reads only message metadata, never bodies;
// without filters other than dates it reads the metadata of the page
// alone, and with filters it stops after SearchScanLimit messages.
func (s *Store) SearchMessages(serverID int64, q store.MessageQuery) (store.SearchResult, error) {
	var res store.SearchResult
	var start []byte
	if !q.To.IsZero() {
		start = make([]byte, 8)
		binary.BigEndian.PutUint64(start, uint64(q.To.UnixNano()+1))
	}
	var low []byte
	if !q.From.IsZero() {
		low = make([]byte, 8)
		binary.BigEndian.PutUint64(low, uint64(max(q.From.UnixNano(), 0)))
	}
	filters := q.Filters()
	scanned := 0
	var msgs *bbolt.Bucket // the server's messages, in the current read transaction
	found, err := s.scanBackward(func(tx *bbolt.Tx) (*bbolt.Bucket, bool) {
		mb := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mb == nil {
			return nil, false
		}
		msgs = mb.Bucket(bucketMessages)
		return mb.Bucket(bucketByTime), true
	}, start, func(k, _ []byte) (bool, error) {
		if low != nil && bytes.Compare(k[:8], low) < 0 {
			return false, nil
		}
		inPage := res.Total >= q.Offset && res.Total < q.Offset+q.Count
		if !filters {
			if inPage {
				var m store.Message
				if err := getJSON(msgs, k[8:], &m); err != nil {
					return false, fmt.Errorf("store: index entry %x: %w", k, err)
				}
				res.Messages = append(res.Messages, m)
			}
			res.Total++
			return true, nil
		}
		if scanned == s.scan.limit {
			res.Capped = true
			return false, nil
		}
		scanned++
		v := msgs.Get(k[8:])
		if v == nil {
			return false, fmt.Errorf("store: index entry %x: %w", k, store.ErrNotFound)
		}
		var m store.Message
		if err := json.Unmarshal(v, &m); err != nil {
			return false, err
		}
		if !q.Match(&m) {
			return true, nil
		}
		if inPage {
			res.Messages = append(res.Messages, m)
		}
		res.Total++
		return true, nil
	})
	if err == nil && !found {
		err = store.ErrNotFound
	}
	return res, err
}
