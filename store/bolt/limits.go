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

func (s *Store) SentSince(serverID int64, since time.Time, limit int) (int, error) {
	n := 0
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		n = countSince(mail, since, limit)
		return nil
	})
	return n, err
}

// countSince counts, up to limit (0: all), the server's messages received
// since.
func countSince(mail *bbolt.Bucket, since time.Time, limit int) int {
	low := make([]byte, 8)
	binary.BigEndian.PutUint64(low, uint64(max(since.UnixNano(), 0)))
	n := 0
	c := mail.Bucket(bucketByTime).Cursor()
	for k, _ := c.Last(); k != nil && bytes.Compare(k[:8], low) >= 0; k, _ = c.Prev() {
		n++
		if limit > 0 && n >= limit {
			break
		}
	}
	return n
}

// SentOn returns how many messages the server accepted on the UTC day of
// day, in every stream and tag: the day's Sent counters of the stats.
func (s *Store) SentOn(serverID int64, day time.Time) (int64, error) {
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		var err error
		n, err = sentOn(mail, day)
		return err
	})
	return n, err
}

func sentOn(mail *bbolt.Bucket, day time.Time) (int64, error) {
	b := mail.Bucket(bucketStats)
	if b == nil {
		return 0, nil
	}
	var n int64
	prefix := []byte(day.UTC().Format(statDay) + "\x00")
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var counts map[string]int64
		if err := json.Unmarshal(v, &counts); err != nil {
			return 0, fmt.Errorf("store: stats %q: %w", k, err)
		}
		n += counts[store.StatSent]
	}
	return n, nil
}
