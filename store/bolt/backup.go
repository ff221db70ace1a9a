package bolt

import (
	"io"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole store to w: the state of
// one read transaction, which sees every write committed before it began
// and none after, written with bbolt's own copy (Tx.WriteTo). The copy is
// a store file that Open accepts as it is. It returns the number of bytes
// written, which on success is the size the store had when the copy began.
//
// Writes go on during the copy: bbolt lets readers run beside its one
// writer. One thing a reader does hold up: a write that makes the file
// outgrow its memory map waits until every read transaction has ended,
// because bbolt cannot remap the file under a reader. A copy into a slow
// writer (a client at the end of a network) can therefore stall every
// write for as long as it lasts; copy into a local file first, as the HTTP
// API does, and send that.
func (s *Store) Backup(w io.Writer) (int64, error) {
	select {
	case <-s.closing:
		return 0, store.ErrClosed
	default:
	}
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
