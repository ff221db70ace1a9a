package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// An account's log: what happened to the account that its people should
// know and did not do themselves.
var bucketAccountEvents = []byte("accountevents")

func addAccountEvent(tx *bbolt.Tx, accountID int64, e store.AccountEvent) error {
	b := tx.Bucket(bucketAccountEvents)
	key := binary.BigEndian.AppendUint64(itob(accountID), uint64(e.At.UnixNano()))
	// Two events of one account in the same nanosecond: the later one
	// goes just after.
	for b.Get(key) != nil {
		key = binary.BigEndian.AppendUint64(key[:8], binary.BigEndian.Uint64(key[8:])+1)
	}
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// AccountEvents returns an account's log, oldest first.
func (s *Store) AccountEvents(accountID int64) ([]store.AccountEvent, error) {
	var out []store.AccountEvent
	err := s.view(func(tx *bbolt.Tx) error {
		prefix := itob(accountID)
		c := tx.Bucket(bucketAccountEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e store.AccountEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
