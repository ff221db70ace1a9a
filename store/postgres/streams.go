package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// CreateStream files s.
func (s *Store) CreateStream(st store.Stream) error {
	doc, err := marshal(st)
	if err != nil {
		return err
	}
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO streams (server_id, id, doc) VALUES ($1, $2, $3)`, st.ServerID, st.ID, doc)
		switch {
		case isUnique(err, ""):
			return store.ErrStreamExists
		case isForeignKey(err):
			return store.ErrServerMissing
		}
		return err
	})
}

// Stream returns a server's stream.
func (s *Store) Stream(serverID int64, id string) (store.Stream, error) {
	var st store.Stream
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &st, `SELECT doc FROM streams WHERE server_id = $1 AND id = $2`, serverID, id)
	})
	return st, err
}

// ListStreams returns a server's stored streams, by ID.
func (s *Store) ListStreams(serverID int64) ([]store.Stream, error) {
	var out []store.Stream
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := serverThere(ctx, tx, serverID); err != nil {
			return err
		}
		var err error
		out, err = docs[store.Stream](ctx, tx, `SELECT doc FROM streams WHERE server_id = $1 ORDER BY id`, serverID)
		return err
	})
	return out, err
}

// serverThere fails with ErrServerMissing when server id does not exist.
func serverThere(ctx context.Context, tx pgx.Tx, id int64) error {
	ok, err := serverExists(ctx, tx, id, false)
	if err == nil && !ok {
		err = store.ErrServerMissing
	}
	return err
}

// UpdateStream replaces a stream.
func (s *Store) UpdateStream(st store.Stream) error {
	doc, err := marshal(st)
	if err != nil {
		return err
	}
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE streams SET doc = $3 WHERE server_id = $1 AND id = $2`, st.ServerID, st.ID, doc)
		if err == nil && tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return err
	})
}

// SuppressInStream files suppressions and, for an unsubscribe, its
// webhook calls.
func (s *Store) SuppressInStream(sups []store.StreamSuppression, change *store.SubscriptionChange) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, sup := range sups {
			sup.Email = strings.ToLower(sup.Email)
			doc, err := marshal(sup)
			if err != nil {
				return err
			}
			b.Queue(`INSERT INTO stream_suppressions (server_id, stream, email, doc) VALUES ($1, $2, $3, $4)
				ON CONFLICT (server_id, stream, email) DO UPDATE SET doc = excluded.doc`, sup.ServerID, sup.Stream, sup.Email, doc)
		}
		if change != nil {
			hooks, err := docs[store.Webhook](ctx, tx, `SELECT doc FROM webhooks WHERE server_id = $1`, change.ServerID)
			if err != nil {
				return err
			}
			calls, err := store.SubscriptionDeliveries(hooks, *change, store.NewMessageID)
			if err != nil {
				return err
			}
			if err := queueOutbox(b, calls); err != nil {
				return err
			}
		}
		err := tx.SendBatch(ctx, b).Close()
		if isForeignKey(err) {
			return store.ErrServerMissing
		}
		return err
	})
}

// UnsuppressInStream removes a stream's suppressions of emails.
func (s *Store) UnsuppressInStream(serverID int64, stream string, emails []string) error {
	lower := make([]string, len(emails))
	for i, e := range emails {
		lower[i] = strings.ToLower(e)
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM stream_suppressions WHERE server_id = $1 AND stream = $2 AND email = ANY($3)`, serverID, stream, lower)
	return s.batch(b)
}

// StreamSuppressed returns the suppression of email in a stream.
func (s *Store) StreamSuppressed(serverID int64, stream, email string) (store.StreamSuppression, bool, error) {
	var sup store.StreamSuppression
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &sup, `SELECT doc FROM stream_suppressions WHERE server_id = $1 AND stream = $2 AND email = $3`,
			serverID, stream, strings.ToLower(email))
	})
	if errors.Is(err, store.ErrNotFound) {
		return sup, false, nil
	}
	return sup, err == nil, err
}

// StreamSuppressions returns a stream's suppressions.
func (s *Store) StreamSuppressions(serverID int64, stream string) ([]store.StreamSuppression, error) {
	var out []store.StreamSuppression
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := serverThere(ctx, tx, serverID); err != nil {
			return err
		}
		var err error
		out, err = docs[store.StreamSuppression](ctx, tx, `SELECT doc FROM stream_suppressions WHERE server_id = $1 AND stream = $2 ORDER BY email`, serverID, stream)
		return err
	})
	return out, err
}

// InstallationKey returns the key of unsubscribe links, made once for
// every node.
func (s *Store) InstallationKey() ([]byte, error) {
	fresh := make([]byte, 32)
	rand.Read(fresh)
	var key []byte
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO installation_keys (name, key) VALUES ('unsubscribe', $1) ON CONFLICT DO NOTHING`, fresh); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT key FROM installation_keys WHERE name = 'unsubscribe'`).Scan(&key)
	})
	return key, err
}
