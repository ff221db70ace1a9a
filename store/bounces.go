package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bounces: in each server's mail bucket, one record per Bounced event,
// keyed by a per-server sequence (so newest first is a reverse walk), and
// an index from the bounce's ID to that sequence.
var (
	bucketBounces   = []byte("bounces")   // sequence → Bounce
	bucketBounceIDs = []byte("bounceids") // ID → sequence
)

// Bounce is a recipient's bounce, as Postmark's Bounces API shows it.
//
// IDs are random 53-bit numbers, unique within their server: they fit
// JavaScript's numbers (Postmark's clients read IDs as numbers), and,
// unlike a sequence shared by all servers, they tell a server nothing of
// how much other servers bounce, and no server's ID names another's
// bounce.
type Bounce struct {
	ID                int64
	Seq               uint64
	ServerID          int64
	MessageID         string
	Type              string // HardBounce, SoftBounce, ... (EventDetails.BounceType)
	TypeCode          int
	Email             string
	From              string // the message's From address
	Tag               string `json:",omitempty"`
	Subject           string
	MessageStream     string
	BouncedAt         time.Time
	Summary           string // what the bounce means, in words
	Details           string // the remote server's reply
	DestinationServer string `json:",omitempty"`
	// Inactivated: this bounce made the recipient inactive.
	Inactivated bool `json:",omitempty"`

	// Filled when read, never stored:
	// Inactive: the recipient is inactive now because of this bounce
	// (Inactivated, and not reactivated since).
	Inactive bool `json:"-"`
	// DumpAvailable: the message's raw MIME is still kept.
	DumpAvailable bool `json:"-"`
}

const maxJSInt = 1<<53 - 1

// createBounce files a bounce for a Bounced outcome of msg and returns its ID.
func createBounce(mail *bolt.Bucket, msg *Message, o Outcome, at time.Time) (int64, error) {
	bounces, err := mail.CreateBucketIfNotExists(bucketBounces)
	if err != nil {
		return 0, err
	}
	ids, err := mail.CreateBucketIfNotExists(bucketBounceIDs)
	if err != nil {
		return 0, err
	}
	var id int64
	for id == 0 || ids.Get(itob(id)) != nil {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		id = int64(binary.BigEndian.Uint64(b[:]) & maxJSInt)
	}
	seq, err := bounces.NextSequence()
	if err != nil {
		return 0, err
	}
	b := Bounce{
		ID: id, Seq: seq, ServerID: msg.ServerID, MessageID: msg.MessageID,
		Type: o.Details.BounceType, TypeCode: o.Details.BounceTypeCode,
		Email: o.Recipient, From: fromAddress(msg.From), Tag: msg.Tag, Subject: msg.Subject,
		MessageStream: msg.MessageStream, BouncedAt: at.UTC(),
		Summary: o.Details.Summary, Details: o.Details.DeliveryMessage, DestinationServer: o.Details.DestinationServer,
		Inactivated: o.Inactivate,
	}
	if b.Type == "" {
		b.Type, b.TypeCode = "Unknown", 2048
	}
	if err := putJSON(bounces, seqKey(seq), b); err != nil {
		return 0, err
	}
	return id, ids.Put(itob(id), seqKey(seq))
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// fill sets a bounce's read-time fields.
func (b *Bounce) fill(mail *bolt.Bucket) {
	b.DumpAvailable = mail.Bucket(bucketRaw).Get([]byte(b.MessageID)) != nil
	b.Inactive = false
	if b.Inactivated {
		if sup := mail.Bucket(bucketSuppressed); sup != nil {
			var s Suppression
			if getJSON(sup, []byte(strings.ToLower(b.Email)), &s) == nil {
				// Inactive while the suppression is this bounce's: a
				// suppression from another message is another bounce's.
				b.Inactive = s.MessageID == b.MessageID
			}
		}
	}
}

func getBounce(mail *bolt.Bucket, id int64) (Bounce, error) {
	var b Bounce
	ids, bounces := mail.Bucket(bucketBounceIDs), mail.Bucket(bucketBounces)
	if ids == nil || bounces == nil || id <= 0 {
		return b, ErrNotFound
	}
	seq := ids.Get(itob(id))
	if seq == nil {
		return b, ErrNotFound
	}
	if err := getJSON(bounces, seq, &b); err != nil {
		return b, err
	}
	b.fill(mail)
	return b, nil
}

// Bounce returns one of a server's bounces. Another server's is not found.
func (s *Store) Bounce(serverID, id int64) (Bounce, error) {
	var b Bounce
	err := s.view(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
		}
		var err error
		b, err = getBounce(mail, id)
		return err
	})
	return b, err
}

// ActivateBounce makes a bounce's recipient active again for the
// server and returns the bounce as it is now.
func (s *Store) ActivateBounce(serverID, id int64) (Bounce, error) {
	var b Bounce
	err := s.update(func(tx *bolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
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
		b.fill(mail)
		return nil
	})
	return b, err
}

// BounceQuery selects a server's bounces. Zero fields do not filter.
type BounceQuery struct {
	Count, Offset int
	Type          string // bounce type name, ignoring case
	Inactive      *bool
	Email         string // part of the address, ignoring case
	Tag           string // ignoring case
	MessageID     string
	From, To      time.Time // BouncedAt, both included
}

func (q BounceQuery) match(b *Bounce) bool {
	switch {
	case q.Type != "" && !strings.EqualFold(q.Type, b.Type),
		q.Inactive != nil && *q.Inactive != b.Inactive,
		q.Email != "" && !strings.Contains(strings.ToLower(b.Email), strings.ToLower(q.Email)),
		q.Tag != "" && !strings.EqualFold(q.Tag, b.Tag),
		q.MessageID != "" && q.MessageID != b.MessageID,
		!q.From.IsZero() && b.BouncedAt.Before(q.From),
		!q.To.IsZero() && b.BouncedAt.After(q.To):
		return false
	}
	return true
}

// BounceResult is a page of bounces and the number that match.
type BounceResult struct {
	Total   int
	Bounces []Bounce
	// Capped: the listing examined SearchScanLimit bounces and stopped,
	// so Total is a lower bound and the page may be short.
	Capped bool
}

// Bounces returns the number of a server's bounces that match q and the
// page of them that q asks for, newest first, walking them in read
// transactions of scanChunk and stopping after SearchScanLimit.
func (s *Store) Bounces(serverID int64, q BounceQuery) (BounceResult, error) {
	var res BounceResult
	scanned := 0
	var mail *bolt.Bucket // the server's mail bucket, in the current read transaction
	found, err := s.scanBackward(func(tx *bolt.Tx) (*bolt.Bucket, bool) {
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
		var b Bounce
		if err := json.Unmarshal(v, &b); err != nil {
			return false, fmt.Errorf("store: bounce %x: %w", k, err)
		}
		b.fill(mail)
		if !q.match(&b) {
			return true, nil
		}
		if res.Total >= q.Offset && res.Total < q.Offset+q.Count {
			res.Bounces = append(res.Bounces, b)
		}
		res.Total++
		return true, nil
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	return res, err
}

// DeliveryStats returns how many recipients a server has inactive and how
// many bounces of each type it has.
func (s *Store) DeliveryStats(serverID int64) (inactive int, byType map[string]int, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		inactive, byType = 0, map[string]int{}
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return ErrNotFound
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
func checkBounces(serverID int64, mb *bolt.Bucket) []error {
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
		var b Bounce
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
func checkMailExtras(serverID int64, mb *bolt.Bucket) []error {
	return append(checkStats(serverID, mb), checkBounces(serverID, mb)...)
}
