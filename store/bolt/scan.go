package bolt

import (
	"bytes"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// scanChunk is how many entries one read transaction of a long scan
// visits. A read transaction holds back the reuse of the pages that
// writes free and a remap of a growing file. With 5,000 the longest one
// took 86 ms on 1M messages (BenchmarkSearchLargeServer, 2-core AMD
// EPYC), too close to 100 ms; 2,500 halves it, however large the server.
const scanChunk = 2500

// scanBackward visits the entries of the bucket that bucket finds in each
// read transaction (nil and true when its owner exists but it does not:
// nothing to visit; false when the owner does not exist); bucket is also
// where a caller takes the other buckets visit reads, once per
// transaction. It walks from
// the newest (highest key) down, in read transactions of scanChunk
// entries each, resuming after the last key visited. visit returns false
// to stop. It returns whether the bucket was found, and visit's or the
// store's error. Entries written between two transactions above the
// resume point are not visited; those below are.
func (s *Store) scanBackward(bucket func(*bbolt.Tx) (*bbolt.Bucket, bool), start []byte, visit func(k, v []byte) (bool, error)) (bool, error) {
	var resume []byte // the last key visited; nil: from start
	found := true
	for {
		n, done := 0, false
		began := time.Now()
		err := s.view(func(tx *bbolt.Tx) error {
			b, ok := bucket(tx)
			if b == nil {
				found, done = ok, true
				return nil
			}
			c := b.Cursor()
			var k, v []byte
			switch {
			case resume != nil:
				// The largest key below resume, whether resume is still
				// there or was deleted meanwhile.
				if k, v = c.Seek(resume); k == nil {
					k, v = c.Last()
				}
				for k != nil && bytes.Compare(k, resume) >= 0 {
					k, v = c.Prev()
				}
			case start != nil:
				if k, v = c.Seek(start); k == nil {
					k, v = c.Last()
				}
				for k != nil && bytes.Compare(k, start) > 0 {
					k, v = c.Prev()
				}
			default:
				k, v = c.Last()
			}
			for ; k != nil; k, v = c.Prev() {
				if n == s.scan.chunk {
					resume = append(resume[:0], k...)
					// k itself is visited in the next transaction.
					resume = append(resume, 0)
					return nil
				}
				n++
				more, err := visit(k, v)
				if err != nil || !more {
					done = true
					return err
				}
			}
			done = true
			return nil
		})
		if s.scan.onChunk != nil {
			s.scan.onChunk(time.Since(began))
		}
		if err != nil || done {
			return found, err
		}
	}
}

// scanSettings are scanChunk and SearchScanLimit, which tests lower, and
// a hook told how long each read transaction of a scan took.
type scanSettings struct {
	chunk, limit int
	onChunk      func(time.Duration)
}
