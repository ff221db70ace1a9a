package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/mail"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MessageQuery selects a server's messages. Zero fields do not filter.
type MessageQuery struct {
	Count, Offset int // the page; Count 0 returns no messages, only the total
	// Recipient matches an envelope recipient or a To, Cc or Bcc address,
	// ignoring case.
	Recipient string
	// FromEmail matches the From header's address or the envelope
	// sender, ignoring case.
	FromEmail string
	Tag       string // the tag, ignoring case
	Subject   string // part of the subject, ignoring case
	Stream    string // the message stream
	// Statuses lists the message statuses wanted (StatusQueued, ...).
	Statuses []string
	// From and To bound ReceivedAt, both included.
	From, To time.Time
	// Metadata keys must have these values.
	Metadata map[string]string
}

func (q MessageQuery) filters() bool {
	return q.Recipient != "" || q.FromEmail != "" || q.Tag != "" || q.Subject != "" || q.Stream != "" ||
		len(q.Statuses) > 0 || len(q.Metadata) > 0
}

func (q MessageQuery) match(m *Message) bool {
	if q.Tag != "" && !strings.EqualFold(q.Tag, m.Tag) {
		return false
	}
	if q.Stream != "" && q.Stream != m.MessageStream {
		return false
	}
	if q.Subject != "" && !strings.Contains(strings.ToLower(m.Subject), strings.ToLower(q.Subject)) {
		return false
	}
	if len(q.Statuses) > 0 {
		found := false
		for _, s := range q.Statuses {
			found = found || s == m.Status
		}
		if !found {
			return false
		}
	}
	for k, v := range q.Metadata {
		if got, ok := m.Metadata[k]; !ok || got != v {
			return false
		}
	}
	if q.FromEmail != "" && !strings.EqualFold(q.FromEmail, m.EnvelopeFrom) && !strings.EqualFold(q.FromEmail, fromAddress(m.From)) {
		return false
	}
	if q.Recipient != "" && !hasRecipient(m, q.Recipient) {
		return false
	}
	return true
}

func hasRecipient(m *Message, r string) bool {
	for _, x := range m.Recipients {
		if strings.EqualFold(x, r) {
			return true
		}
	}
	for _, list := range [][]Address{m.To, m.Cc, m.Bcc} {
		for _, a := range list {
			if strings.EqualFold(a.Email, r) {
				return true
			}
		}
	}
	return false
}

// fromAddress is the address of a From header, or the header itself when
// it does not parse.
func fromAddress(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		return a.Address
	}
	return strings.TrimSpace(from)
}

// SearchResult is a page of a search and the number of messages that
// match.
type SearchResult struct {
	Total    int
	Messages []Message
	// Capped: the search examined SearchScanLimit messages and stopped,
	// so Total is a lower bound and the page may be short.
	Capped bool
}

// SearchMessages returns the number of a server's messages that match q
// and the page of them that q asks for, newest first. It walks the
// server's time index from q.To back to q.From, in read transactions of
// scanChunk entries, and reads only message metadata, never bodies;
// without filters other than dates it reads the metadata of the page
// alone, and with filters it stops after SearchScanLimit messages.
func (s *Store) SearchMessages(serverID int64, q MessageQuery) (SearchResult, error) {
	var res SearchResult
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
	filters := q.filters()
	scanned := 0
	var msgs *bolt.Bucket // the server's messages, in the current read transaction
	found, err := s.scanBackward(func(tx *bolt.Tx) (*bolt.Bucket, bool) {
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
				var m Message
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
			return false, fmt.Errorf("store: index entry %x: %w", k, ErrNotFound)
		}
		var m Message
		if err := json.Unmarshal(v, &m); err != nil {
			return false, err
		}
		if !q.match(&m) {
			return true, nil
		}
		if inPage {
			res.Messages = append(res.Messages, m)
		}
		res.Total++
		return true, nil
	})
	if err == nil && !found {
		err = ErrNotFound
	}
	return res, err
}
