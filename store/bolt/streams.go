package bolt

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

var (
	// In each server's mail bucket: stream ID → Stream, and stream ID +
	// NUL + email → StreamSuppression.
	bucketStreams          = []byte("streams")
	bucketStreamSuppressed = []byte("streamsuppressed")
	// In the meta bucket: the key of unsubscribe links.
	keyUnsubscribe = []byte("unsubscribekey")
)

func streamSuppressionKey(stream, email string) []byte {
	return []byte(stream + "\x00" + strings.ToLower(email))
}

// CreateStream files s.
func (s *Store) CreateStream(st store.Stream) error {
	return s.update(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, st.ServerID)
		if err != nil {
			return err
		}
		b, err := mail.CreateBucketIfNotExists(bucketStreams)
		if err != nil {
			return err
		}
		if b.Get([]byte(st.ID)) != nil {
			return store.ErrStreamExists
		}
		return putJSON(b, []byte(st.ID), st)
	})
}

// Stream returns a server's stream.
func (s *Store) Stream(serverID int64, id string) (store.Stream, error) {
	var st store.Stream
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil || mail.Bucket(bucketStreams) == nil {
			return store.ErrNotFound
		}
		return getJSON(mail.Bucket(bucketStreams), []byte(id), &st)
	})
	return st, err
}

// ListStreams returns a server's stored streams, by ID.
func (s *Store) ListStreams(serverID int64) ([]store.Stream, error) {
	var out []store.Stream
	err := s.view(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, serverID)
		if err != nil {
			return err
		}
		b := mail.Bucket(bucketStreams)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var st store.Stream
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			out = append(out, st)
			return nil
		})
	})
	return out, err
}

// UpdateStream replaces a stream.
func (s *Store) UpdateStream(st store.Stream) error {
	return s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(st.ServerID))
		if mail == nil || mail.Bucket(bucketStreams) == nil || mail.Bucket(bucketStreams).Get([]byte(st.ID)) == nil {
			return store.ErrNotFound
		}
		return putJSON(mail.Bucket(bucketStreams), []byte(st.ID), st)
	})
}

// SuppressInStream files suppressions and, for an unsubscribe, its
// webhook calls.
func (s *Store) SuppressInStream(sups []store.StreamSuppression, change *store.SubscriptionChange) error {
	return s.update(func(tx *bbolt.Tx) error {
		for _, sup := range sups {
			mail, err := serverMail(tx, sup.ServerID)
			if err != nil {
				return err
			}
			b, err := mail.CreateBucketIfNotExists(bucketStreamSuppressed)
			if err != nil {
				return err
			}
			sup.Email = strings.ToLower(sup.Email)
			if err := putJSON(b, streamSuppressionKey(sup.Stream, sup.Email), sup); err != nil {
				return err
			}
		}
		if change == nil {
			return nil
		}
		mail, err := serverMail(tx, change.ServerID)
		if err != nil {
			return err
		}
		hooks, err := serverWebhooks(mail)
		if err != nil {
			return err
		}
		calls, err := store.SubscriptionDeliveries(hooks, *change, store.NewMessageID)
		if err != nil {
			return err
		}
		return fileOutbox(tx, calls)
	})
}

// UnsuppressInStream removes a stream's suppressions of emails.
func (s *Store) UnsuppressInStream(serverID int64, stream string, emails []string) error {
	return s.update(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, serverID)
		if err != nil {
			return err
		}
		b := mail.Bucket(bucketStreamSuppressed)
		if b == nil {
			return nil
		}
		for _, e := range emails {
			if err := b.Delete(streamSuppressionKey(stream, e)); err != nil {
				return err
			}
		}
		return nil
	})
}

// StreamSuppressed returns the suppression of email in a stream.
func (s *Store) StreamSuppressed(serverID int64, stream, email string) (store.StreamSuppression, bool, error) {
	var sup store.StreamSuppression
	found := false
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil {
			return store.ErrServerMissing
		}
		b := mail.Bucket(bucketStreamSuppressed)
		if b == nil {
			return nil
		}
		err := getJSON(b, streamSuppressionKey(stream, email), &sup)
		if err == store.ErrNotFound {
			return nil
		}
		found = err == nil
		return err
	})
	return sup, found, err
}

// StreamSuppressions returns a stream's suppressions.
func (s *Store) StreamSuppressions(serverID int64, stream string) ([]store.StreamSuppression, error) {
	var out []store.StreamSuppression
	err := s.view(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, serverID)
		if err != nil {
			return err
		}
		b := mail.Bucket(bucketStreamSuppressed)
		if b == nil {
			return nil
		}
		prefix := []byte(stream + "\x00")
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var sup store.StreamSuppression
			if err := json.Unmarshal(v, &sup); err != nil {
				return err
			}
			out = append(out, sup)
		}
		return nil
	})
	return out, err
}

// InstallationKey returns the key of unsubscribe links, made on first use.
func (s *Store) InstallationKey() ([]byte, error) {
	var key []byte
	err := s.view(func(tx *bbolt.Tx) error {
		key = bytes.Clone(tx.Bucket(bucketMeta).Get(keyUnsubscribe))
		return nil
	})
	if err != nil || key != nil {
		return key, err
	}
	err = s.update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if key = bytes.Clone(meta.Get(keyUnsubscribe)); key != nil {
			return nil
		}
		key = make([]byte, 32)
		rand.Read(key)
		return meta.Put(keyUnsubscribe, key)
	})
	return key, err
}
