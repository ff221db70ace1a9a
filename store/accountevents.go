package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// An account's log: what happened to the account that its people should
// know and did not do themselves.
var bucketAccountEvents = []byte("accountevents") // account ID, time → AccountEvent

// AccountEvent is one entry of an account's log.
type AccountEvent struct {
	At      time.Time
	Type    string // AccountEventDomainLost, ...
	Domain  string `json:",omitempty"`
	Message string
}

// Types of AccountEvent.
const (
	// AccountEventDomainLost: an unproven domain of the account went to
	// another account that proved it in DNS (TakeDomain).
	AccountEventDomainLost = "DomainLost"
	// AccountEventDomainUnverified: a verified domain's DKIM records were
	// not found for domain-reverify-days in a row.
	AccountEventDomainUnverified = "DomainUnverified"
)

func addAccountEvent(tx *bolt.Tx, accountID int64, e AccountEvent) error {
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
func (s *Store) AccountEvents(accountID int64) ([]AccountEvent, error) {
	var out []AccountEvent
	err := s.view(func(tx *bolt.Tx) error {
		prefix := itob(accountID)
		c := tx.Bucket(bucketAccountEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e AccountEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
