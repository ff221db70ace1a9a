package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// CreateWebhook files w with a new ID.
func (s *Store) CreateWebhook(w store.Webhook) (store.Webhook, error) {
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO webhooks (server_id, stream, doc) VALUES ($1, $2, '{}') RETURNING id`, w.ServerID, w.MessageStream).Scan(&w.ID); err != nil {
			if isForeignKey(err) {
				return store.ErrServerMissing
			}
			return err
		}
		doc, err := marshal(w)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE webhooks SET doc = $2 WHERE id = $1`, w.ID, doc)
		return err
	})
	return w, err
}

// Webhook returns a server's webhook.
func (s *Store) Webhook(serverID, id int64) (store.Webhook, error) {
	var w store.Webhook
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &w, `SELECT doc FROM webhooks WHERE id = $1 AND server_id = $2`, id, serverID)
	})
	return w, err
}

// ListWebhooks returns a server's webhooks, of stream if not empty.
func (s *Store) ListWebhooks(serverID int64, stream string) ([]store.Webhook, error) {
	var out []store.Webhook
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := serverThere(ctx, tx, serverID); err != nil {
			return err
		}
		var err error
		out, err = docs[store.Webhook](ctx, tx, `SELECT doc FROM webhooks WHERE server_id = $1 AND ($2 = '' OR stream = $2) ORDER BY id`, serverID, stream)
		return err
	})
	return out, err
}

// UpdateWebhook replaces a webhook.
func (s *Store) UpdateWebhook(w store.Webhook) error {
	doc, err := marshal(w)
	if err != nil {
		return err
	}
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhooks SET stream = $3, doc = $4 WHERE id = $1 AND server_id = $2`, w.ID, w.ServerID, w.MessageStream, doc)
		if err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// DeleteWebhook removes a webhook, its log and its pending calls.
func (s *Store) DeleteWebhook(serverID, id int64) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhooks WHERE id = $1 AND server_id = $2`, id, serverID)
		if err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// fileWebhookDeliveries queues an attempt's calls into the outbox, in the
// transaction that records the attempt.
func fileWebhookDeliveries(ctx context.Context, tx pgx.Tx, b *pgx.Batch, msg store.Message, events []store.ResolvedEvent, now time.Time) error {
	hooks, err := docs[store.Webhook](ctx, tx, `SELECT doc FROM webhooks WHERE server_id = $1`, msg.ServerID)
	if err != nil || len(hooks) == 0 {
		return err
	}
	deliveries, err := store.WebhookDeliveries(hooks, msg, events, now, store.NewMessageID)
	if err != nil {
		return err
	}
	return queueOutbox(b, deliveries)
}

// queueOutbox queues the insertion of calls into the outbox.
func queueOutbox(b *pgx.Batch, deliveries []store.WebhookDelivery) error {
	for _, d := range deliveries {
		doc, err := marshal(d)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO webhook_outbox (webhook_id, due_ns, doc) VALUES ($1, $2, $3)`, d.WebhookID, d.Due.UnixNano(), doc)
	}
	return nil
}

// ReleaseWebhookLeases hands back, due now, the calls this node
// (node-name) holds; other nodes' leases stay theirs until they end.
func (s *Store) ReleaseWebhookLeases(now time.Time) (int, error) {
	n := 0
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_outbox SET due_ns = $1, locked_by = NULL WHERE locked_by = $2`, now.UnixNano(), s.opts.NodeName)
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

// ClaimWebhookDeliveries leases up to max calls due at now; nodes claim
// different ones.
func (s *Store) ClaimWebhookDeliveries(now time.Time, lease time.Duration, max int) ([]store.WebhookDelivery, error) {
	var out []store.WebhookDelivery
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT id, doc FROM webhook_outbox WHERE due_ns <= $1 ORDER BY due_ns LIMIT $2 FOR UPDATE SKIP LOCKED`, now.UnixNano(), max)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			var d store.WebhookDelivery
			if err := rows.Scan(&id, &d); err != nil {
				rows.Close()
				return err
			}
			d.ID = id
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		due := now.Add(lease)
		for i := range out {
			out[i].Due, out[i].Leased = due, true
			if _, err := tx.Exec(ctx, `UPDATE webhook_outbox SET due_ns = $2, locked_by = $3 WHERE id = $1`, out[i].ID, due.UnixNano(), s.opts.NodeName); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// FinishWebhookDelivery records a call.
func (s *Store) FinishWebhookDelivery(d store.WebhookDelivery, attempt store.WebhookAttempt, next *time.Time) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		var w store.Webhook
		err := getDoc(ctx, tx, &w, `SELECT doc FROM webhooks WHERE id = $1 FOR UPDATE`, d.WebhookID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // the webhook is gone, and so is the call
		}
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		if next == nil {
			b.Queue(`DELETE FROM webhook_outbox WHERE id = $1`, d.ID)
		} else {
			d.Due, d.Leased = *next, false
			doc, err := marshal(d)
			if err != nil {
				return err
			}
			b.Queue(`UPDATE webhook_outbox SET due_ns = $2, locked_by = NULL, doc = $3 WHERE id = $1`, d.ID, d.Due.UnixNano(), doc)
		}
		wdoc, err := marshal(store.WebhookCalled(w, attempt.Error == "" && attempt.Status/100 == 2, attempt.At))
		if err != nil {
			return err
		}
		b.Queue(`UPDATE webhooks SET doc = $2 WHERE id = $1`, w.ID, wdoc)
		adoc, err := marshal(attempt)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO webhook_attempts (webhook_id, doc) VALUES ($1, $2)`, w.ID, adoc)
		b.Queue(`DELETE FROM webhook_attempts WHERE webhook_id = $1 AND id NOT IN
			(SELECT id FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2)`, w.ID, store.MaxWebhookAttempts)
		return tx.SendBatch(ctx, b).Close()
	})
}

// WebhookAttempts returns a webhook's last calls, newest first.
func (s *Store) WebhookAttempts(serverID, webhookID int64) ([]store.WebhookAttempt, error) {
	var out []store.WebhookAttempt
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks WHERE id = $1 AND server_id = $2`, webhookID, serverID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		var err error
		out, err = docs[store.WebhookAttempt](ctx, tx, `SELECT doc FROM webhook_attempts WHERE webhook_id = $1 ORDER BY id DESC`, webhookID)
		return err
	})
	return out, err
}

// WebhookOutboxDepth counts the calls still to make.
func (s *Store) WebhookOutboxDepth() (int, error) {
	n := 0
	err := s.readOne(func(ctx context.Context, q querier) error {
		return q.QueryRow(ctx, `SELECT count(*) FROM webhook_outbox`).Scan(&n)
	})
	return n, err
}
