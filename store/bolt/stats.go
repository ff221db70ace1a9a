package bolt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Daily stats: in each server's mail bucket, one record of counters per
// day (UTC), message stream and tag, kept when retention purges messages
// so that stats cover a server's whole life.
var bucketStats = []byte("stats")

const statDay = "2006-01-02"

func statKey(day time.Time, stream, tag string) []byte {
	return []byte(day.UTC().Format(statDay) + "\x00" + stream + "\x00" + tag)
}

// parseStatKey splits a stats key into its day, stream and tag.
func parseStatKey(k []byte) (day time.Time, stream, tag string, err error) {
	parts := strings.SplitN(string(k), "\x00", 3)
	if len(parts) != 3 {
		return time.Time{}, "", "", fmt.Errorf("stats key %q: not day, stream and tag", k)
	}
	day, err = time.Parse(statDay, parts[0])
	return day, parts[1], parts[2], err
}

// addStat adds one to a counter of a day, stream and tag, inside a write
// transaction on a server's mail bucket.
func addStat(mail *bbolt.Bucket, at time.Time, stream, tag, counter string) error {
	b, err := mail.CreateBucketIfNotExists(bucketStats)
	if err != nil {
		return err
	}
	k := statKey(at, stream, tag)
	v := b.Get(k)
	if v == nil && tagsOn(b, at) >= store.MaxTagsPerDay {
		k = statKey(at, stream, store.OtherTag)
		v = b.Get(k)
	}
	counts := map[string]int64{}
	if v != nil {
		if err := json.Unmarshal(v, &counts); err != nil {
			return fmt.Errorf("store: stats %q: %w", k, err)
		}
	}
	counts[counter]++
	return putJSON(b, k, counts)
}

// tagsOn counts a day's stats records (one per stream and tag), stopping
// at MaxTagsPerDay: it runs only when a record would be added.
func tagsOn(b *bbolt.Bucket, at time.Time) int {
	prefix := []byte(at.UTC().Format(statDay) + "\x00")
	n := 0
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < store.MaxTagsPerDay; k, _ = c.Next() {
		n++
	}
	return n
}

// Stats returns a server's daily counters in day order, days without any
// left out.
func (s *Store) Stats(serverID int64, q store.StatsQuery) ([]store.DayStats, error) {
	var out []store.DayStats
	err := s.view(func(tx *bbolt.Tx) error {
		out = nil
		mb := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mb == nil {
			return store.ErrNotFound
		}
		b := mb.Bucket(bucketStats)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if q.From.IsZero() {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(q.From.UTC().Format(statDay)))
		}
		var last []byte
		if !q.To.IsZero() {
			last = []byte(q.To.UTC().Format(statDay) + "\x01")
		}
		for ; k != nil; k, v = c.Next() {
			if last != nil && bytes.Compare(k, last) >= 0 {
				break
			}
			day, stream, tag, err := parseStatKey(k)
			if err != nil {
				return err
			}
			if (q.Stream != "" && stream != q.Stream) || (q.Tag != "" && tag != q.Tag) {
				continue
			}
			var counts map[string]int64
			if err := json.Unmarshal(v, &counts); err != nil {
				return fmt.Errorf("store: stats %q: %w", k, err)
			}
			date := day.Format(statDay)
			if len(out) == 0 || out[len(out)-1].Date != date {
				out = append(out, store.DayStats{Date: date, Counts: map[string]int64{}})
			}
			for name, n := range counts {
				out[len(out)-1].Counts[name] += n
			}
		}
		return nil
	})
	return out, err
}

// checkStats verifies a server's stats bucket: keys name a day, a stream
// and a tag, values are counters.
func checkStats(serverID int64, mb *bbolt.Bucket) []error {
	b := mb.Bucket(bucketStats)
	if b == nil {
		return nil
	}
	var problems []error
	_ = b.ForEach(func(k, v []byte) error {
		if _, _, _, err := parseStatKey(k); err != nil {
			problems = append(problems, fmt.Errorf("server %d: %w", serverID, err))
		}
		var counts map[string]int64
		if err := json.Unmarshal(v, &counts); err != nil {
			problems = append(problems, fmt.Errorf("server %d: stats %q: %w", serverID, k, err))
		}
		return nil
	})
	return problems
}
