package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Bounces: in each server's mail bucket, one record per Bounced event,
// keyed by a per-server sequence (so newest first is a reverse walk), and
// an index from the bounce's ID to that sequence.
var (
	bucketBounces   = []byte("bounces")   // sequence → Bounce
	bucketBounceIDs = []byte("bounceids") // ID → sequence
)

// createBounce files b, giving it its ID and Seq, and returns the ID.
func createBounce(mail *bbolt.Bucket, b *store.Bounce) (int64, error) {
	bounces, err := mail.CreateBucketIfNotExists(bucketBounces)
	if err != nil {
		return 0, err
	}
	ids, err := mail.CreateBucketIfNotExists(bucketBounceIDs)
	if err != nil {
		return 0, err
	}
	id := store.NewBounceID()
	for ids.Get(itob(id)) != nil {
		id = store.NewBounceID()
	}
	seq, err := bounces.NextSequence()
	if err != nil {
		return 0, err
	}
	b.ID, b.Seq = id, seq
	if err := putJSON(bounces, seqKey(seq), b); err != nil {
		return 0, err
	}
	return id, ids.Put(itob(id), seqKey(seq))
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// fill sets a bounce's read-time fields.
func fillBounce(b *store.Bounce, mail *bbolt.Bucket) {
	b.DumpAvailable = mail.Bucket(bucketRaw).Get([]byte(b.MessageID)) != nil
	var sup *store.Suppression
	if b.Inactivated {
		if b2 := mail.Bucket(bucketSuppressed); b2 != nil {
			var s store.Suppression
			if getJSON(b2, []byte(strings.ToLower(b.Email)), &s) == nil {
				sup = &s
			}
		}
	}
	b.Inactive = store.BounceInactive(*b, sup)
}

func getBounce(mail *bbolt.Bucket, id int64) (store.Bounce, error) {
	var b store.Bounce
	ids, bounces := mail.Bucket(bucketBounceIDs), mail.Bucket(bucketBounces)
	if ids == nil || bounces == nil || id <= 0 {
		return b, store.ErrNotFound
	}
	seq := ids.Get(itob(id))
	if seq == nil {
		return b, store.ErrNotFound
	}
	if err := getJSON(bounces, seq, &b); err != nil {
		return b, err
	}
	fillBounce(&b, mail)
	return b, nil
}

// Bounce returns one of a server's bounces. Another server's is not found.
func (s *Store) Bounce(serverID, id int64) (store.Bounce, error) {
	var b store.Bounce
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		var err error
		b, err = getBounce(mail, id)
		return err
	})
	return b, err
}

// ActivateBounce makes a bounce's recipient active again for the
// server and returns the bounce as it is now.
func (s *Store) ActivateBounce(serverID, id int64) (store.Bounce, error) {
	var b store.Bounce
	err := s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		var err error
		if b, err = getBounce(mail, id); err != nil {
			return err
		}
		if sup := mail.Bucket(bucketSuppressed); sup != nil {
			if err := sup.Delete([]byte(strings.ToLower(b.Email))); err != nil {
				return err
			}
		}
		fillBounce(&b, mail)
		return nil
	})
	return b, err
}

// Bounces returns the number of a server's bounces that match q and the
// page of them that q asks for, newest first, walking them in read
// transactions of scanChunk and stopping after SearchScanLimit.
func (s *Store) Bounces(serverID int64, q store.BounceQuery) (store.BounceResult, error) {
	var res store.BounceResult
	scanned := 0
	var mail *bbolt.Bucket // the server's mail bucket, in the current read transaction
	found, err := s.scanBackward(func(tx *bbolt.Tx) (*bbolt.Bucket, bool) {
		if mail = tx.Bucket(bucketMail).Bucket(itob(serverID)); mail == nil {
			return nil, false
		}
		return mail.Bucket(bucketBounces), true
	}, nil, func(k, v []byte) (bool, error) {
		if scanned == s.scan.limit {
			res.Capped = true
			return false, nil
		}
		scanned++
		var b store.Bounce
		if err := json.Unmarshal(v, &b); err != nil {
			return false, fmt.Errorf("store: bounce %x: %w", k, err)
		}
		fillBounce(&b, mail)
		if !q.Match(&b) {
			return true, nil
		}
		if res.Total >= q.Offset && res.Total < q.Offset+q.Count {
			res.Bounces = append(res.Bounces, b)
		}
		res.Total++
		return true, nil
	})
	if err == nil && !found {
		err = store.ErrNotFound
	}
	return res, err
}

// DeliveryStats returns how many recipients a server has inactive and how
// many bounces of each type it has.
func (s *Store) DeliveryStats(serverID int64) (inactive int, byType map[string]int, err error) {
	err = s.view(func(tx *bbolt.Tx) error {
		inactive, byType = 0, map[string]int{}
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrNotFound
		}
		if sup := mail.Bucket(bucketSuppressed); sup != nil {
			inactive = sup.Stats().KeyN
		}
		bounces := mail.Bucket(bucketBounces)
		if bounces == nil {
			return nil
		}
		return bounces.ForEach(func(k, v []byte) error {
			var b struct{ Type string }
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("store: bounce %x: %w", k, err)
			}
			byType[b.Type]++
			return nil
		})
	})
	return inactive, byType, err
}

// checkBounces verifies a server's bounces: each is in the ID index under
// its own ID and sequence, and each index entry names a bounce.
func checkBounces(serverID int64, mb *bbolt.Bucket) []error {
	bounces, ids := mb.Bucket(bucketBounces), mb.Bucket(bucketBounceIDs)
	if bounces == nil && ids == nil {
		return nil
	}
	if bounces == nil || ids == nil {
		return []error{fmt.Errorf("server %d: bounces without their ID index, or the reverse", serverID)}
	}
	var problems []error
	n := 0
	_ = bounces.ForEach(func(k, v []byte) error {
		n++
		var b store.Bounce
		if err := json.Unmarshal(v, &b); err != nil {
			problems = append(problems, fmt.Errorf("server %d: bounce %x: %w", serverID, k, err))
			return nil
		}
		if b.ServerID != serverID || string(seqKey(b.Seq)) != string(k) {
			problems = append(problems, fmt.Errorf("server %d: bounce %d: server or sequence does not match its key", serverID, b.ID))
		}
		if got := ids.Get(itob(b.ID)); string(got) != string(k) {
			problems = append(problems, fmt.Errorf("server %d: bounce %d not in the ID index", serverID, b.ID))
		}
		return nil
	})
	if m := ids.Stats().KeyN; m != n {
		problems = append(problems, fmt.Errorf("server %d: %d bounces but %d ID index entries", serverID, n, m))
	}
	return problems
}

// checkMailExtras checks the buckets of the messages, stats and bounces
// endpoints.
func checkMailExtras(serverID int64, mb *bbolt.Bucket) []error {
	return append(checkStats(serverID, mb), checkBounces(serverID, mb)...)
}
