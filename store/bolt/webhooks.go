package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

var (
	// In each server's mail bucket: webhook ID → Webhook, and webhook ID
	// + sequence → WebhookAttempt.
	bucketWebhooks        = []byte("webhooks")
	bucketWebhookAttempts = []byte("webhookattempts")
	// Top level: the sequence of webhook IDs, and the outbox: due (8
	// bytes, Unix nanoseconds) + delivery ID → WebhookDelivery.
	bucketWebhookIDs = []byte("webhookids")
	bucketOutbox     = []byte("outbox")
)

func outboxKey(d store.WebhookDelivery) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(d.Due.UnixNano())), uint64(d.ID))
}

func serverMail(tx *bbolt.Tx, serverID int64) (*bbolt.Bucket, error) {
	mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
	if mail == nil {
		return nil, store.ErrServerMissing
	}
	return mail, nil
}

// CreateWebhook files w with a new ID.
func (s *Store) CreateWebhook(w store.Webhook) (store.Webhook, error) {
	err := s.update(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, w.ServerID)
		if err != nil {
			return err
		}
		hooks, err := mail.CreateBucketIfNotExists(bucketWebhooks)
		if err != nil {
			return err
		}
		id, err := tx.Bucket(bucketWebhookIDs).NextSequence()
		if err != nil {
			return err
		}
		w.ID = int64(id)
		return putJSON(hooks, itob(w.ID), w)
	})
	return w, err
}

// Webhook returns a server's webhook.
func (s *Store) Webhook(serverID, id int64) (store.Webhook, error) {
	var w store.Webhook
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil || mail.Bucket(bucketWebhooks) == nil {
			return store.ErrNotFound
		}
		return getJSON(mail.Bucket(bucketWebhooks), itob(id), &w)
	})
	return w, err
}

// serverWebhooks reads a server's webhooks in tx.
func serverWebhooks(mail *bbolt.Bucket) ([]store.Webhook, error) {
	var out []store.Webhook
	hooks := mail.Bucket(bucketWebhooks)
	if hooks == nil {
		return nil, nil
	}
	err := hooks.ForEach(func(_, v []byte) error {
		var w store.Webhook
		if err := json.Unmarshal(v, &w); err != nil {
			return err
		}
		out = append(out, w)
		return nil
	})
	return out, err
}

// ListWebhooks returns a server's webhooks, of stream if not empty.
func (s *Store) ListWebhooks(serverID int64, stream string) ([]store.Webhook, error) {
	var out []store.Webhook
	err := s.view(func(tx *bbolt.Tx) error {
		mail, err := serverMail(tx, serverID)
		if err != nil {
			return err
		}
		all, err := serverWebhooks(mail)
		for _, w := range all {
			if stream == "" || w.MessageStream == stream {
				out = append(out, w)
			}
		}
		return err
	})
	return out, err
}

// UpdateWebhook replaces a webhook.
func (s *Store) UpdateWebhook(w store.Webhook) error {
	return s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(w.ServerID))
		if mail == nil || mail.Bucket(bucketWebhooks) == nil || mail.Bucket(bucketWebhooks).Get(itob(w.ID)) == nil {
			return store.ErrNotFound
		}
		return putJSON(mail.Bucket(bucketWebhooks), itob(w.ID), w)
	})
}

// DeleteWebhook removes a webhook, its log and its pending calls.
func (s *Store) DeleteWebhook(serverID, id int64) error {
	return s.update(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil || mail.Bucket(bucketWebhooks) == nil || mail.Bucket(bucketWebhooks).Get(itob(id)) == nil {
			return store.ErrNotFound
		}
		if err := mail.Bucket(bucketWebhooks).Delete(itob(id)); err != nil {
			return err
		}
		if log := mail.Bucket(bucketWebhookAttempts); log != nil {
			if err := deletePrefix(log, itob(id)); err != nil {
				return err
			}
		}
		outbox := tx.Bucket(bucketOutbox)
		var doomed [][]byte
		if err := outbox.ForEach(func(k, v []byte) error {
			var d store.WebhookDelivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.WebhookID == id {
				doomed = append(doomed, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range doomed {
			if err := outbox.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

func deletePrefix(b *bbolt.Bucket, prefix []byte) error {
	var doomed [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		doomed = append(doomed, bytes.Clone(k))
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// fileWebhookDeliveries puts an attempt's calls into the outbox, in the
// transaction that records the attempt.
func fileWebhookDeliveries(tx *bbolt.Tx, mail *bbolt.Bucket, msg store.Message, events []store.ResolvedEvent, now time.Time) error {
	hooks, err := serverWebhooks(mail)
	if err != nil || len(hooks) == 0 {
		return err
	}
	deliveries, err := store.WebhookDeliveries(hooks, msg, events, now, store.NewMessageID)
	if err != nil {
		return err
	}
	return fileOutbox(tx, deliveries)
}

// fileOutbox puts calls into the outbox, each with a new ID.
func fileOutbox(tx *bbolt.Tx, deliveries []store.WebhookDelivery) error {
	outbox := tx.Bucket(bucketOutbox)
	for _, d := range deliveries {
		id, err := outbox.NextSequence()
		if err != nil {
			return err
		}
		d.ID = int64(id)
		if err := putJSON(outbox, outboxKey(d), d); err != nil {
			return err
		}
	}
	return nil
}

// ReleaseWebhookLeases hands back every leased call, due now: only one
// process has the file open, so their holders are dead.
func (s *Store) ReleaseWebhookLeases(now time.Time) (int, error) {
	n := 0
	err := s.update(func(tx *bbolt.Tx) error {
		n = 0
		outbox := tx.Bucket(bucketOutbox)
		var leased []store.WebhookDelivery
		var keys [][]byte
		if err := outbox.ForEach(func(k, v []byte) error {
			var d store.WebhookDelivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.Leased {
				leased, keys = append(leased, d), append(keys, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for i, d := range leased {
			if err := outbox.Delete(keys[i]); err != nil {
				return err
			}
			d.Due, d.Leased = now, false
			if err := putJSON(outbox, outboxKey(d), d); err != nil {
				return err
			}
		}
		n = len(leased)
		return nil
	})
	return n, err
}

// ClaimWebhookDeliveries leases up to max calls due at now. An outbox
// with nothing due costs a read, not a synced write: the dispatcher asks
// every second.
func (s *Store) ClaimWebhookDeliveries(now time.Time, lease time.Duration, max int) ([]store.WebhookDelivery, error) {
	end := binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano()))
	due := false
	if err := s.view(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketOutbox).Cursor().First()
		due = k != nil && bytes.Compare(k[:8], end) <= 0
		return nil
	}); err != nil || !due {
		return nil, err
	}
	var out []store.WebhookDelivery
	err := s.update(func(tx *bbolt.Tx) error {
		out = out[:0]
		outbox := tx.Bucket(bucketOutbox)
		c := outbox.Cursor()
		var taken [][]byte
		for k, v := c.First(); k != nil && bytes.Compare(k[:8], end) <= 0 && len(out) < max; k, v = c.Next() {
			var d store.WebhookDelivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			taken = append(taken, bytes.Clone(k))
			out = append(out, d)
		}
		for i, k := range taken {
			if err := outbox.Delete(k); err != nil {
				return err
			}
			out[i].Due, out[i].Leased = now.Add(lease), true
			if err := putJSON(outbox, outboxKey(out[i]), out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// FinishWebhookDelivery records a call.
func (s *Store) FinishWebhookDelivery(d store.WebhookDelivery, attempt store.WebhookAttempt, next *time.Time) error {
	return s.update(func(tx *bbolt.Tx) error {
		outbox := tx.Bucket(bucketOutbox)
		if err := outbox.Delete(outboxKey(d)); err != nil {
			return err
		}
		mail := tx.Bucket(bucketMail).Bucket(itob(d.ServerID))
		var w store.Webhook
		if mail == nil || mail.Bucket(bucketWebhooks) == nil || getJSON(mail.Bucket(bucketWebhooks), itob(d.WebhookID), &w) != nil {
			return nil // the webhook or its server is gone: so is the call
		}
		if next != nil {
			d.Due, d.Leased = *next, false
			if err := putJSON(outbox, outboxKey(d), d); err != nil {
				return err
			}
		}
		if err := putJSON(mail.Bucket(bucketWebhooks), itob(w.ID), store.WebhookCalled(w, attempt.Error == "" && attempt.Status/100 == 2, attempt.At)); err != nil {
			return err
		}
		log, err := mail.CreateBucketIfNotExists(bucketWebhookAttempts)
		if err != nil {
			return err
		}
		seq, err := log.NextSequence()
		if err != nil {
			return err
		}
		prefix := itob(w.ID)
		if err := putJSON(log, binary.BigEndian.AppendUint64(bytes.Clone(prefix), seq), attempt); err != nil {
			return err
		}
		// Keep the last MaxWebhookAttempts.
		var keys [][]byte
		c := log.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for len(keys) > store.MaxWebhookAttempts {
			if err := log.Delete(keys[0]); err != nil {
				return err
			}
			keys = keys[1:]
		}
		return nil
	})
}

// WebhookAttempts returns a webhook's last calls, newest first.
func (s *Store) WebhookAttempts(serverID, webhookID int64) ([]store.WebhookAttempt, error) {
	var out []store.WebhookAttempt
	err := s.view(func(tx *bbolt.Tx) error {
		mail := tx.Bucket(bucketMail).Bucket(itob(serverID))
		if mail == nil || mail.Bucket(bucketWebhooks) == nil || mail.Bucket(bucketWebhooks).Get(itob(webhookID)) == nil {
			return store.ErrNotFound
		}
		log := mail.Bucket(bucketWebhookAttempts)
		if log == nil {
			return nil
		}
		prefix := itob(webhookID)
		c := log.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var a store.WebhookAttempt
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
		}
		return nil
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, err
}

// WebhookOutboxDepth counts the calls still to make.
func (s *Store) WebhookOutboxDepth() (int, error) {
	n := 0
	err := s.view(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	return n, err
}
