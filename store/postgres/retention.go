package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// PurgeExpired deletes, server by server, the messages received before
// now less the server's retention, with their events and their bounces
// (but the bounce that keeps its recipient inactive, the handle to
// reactivate it), in transactions of up to batch messages. A message
// still queued stays until its delivery ends; the daily stats and the
// suppressions stay. It stops between two transactions once ctx is done.
func (s *Store) PurgeExpired(ctx context.Context, now time.Time, batch int) (int, error) {
	if batch <= 0 {
		batch = store.DefaultPurgeBatch
	}
	var servers []store.Server
	if err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		servers, err = docs[store.Server](ctx, tx, `SELECT doc FROM servers ORDER BY id`)
		return err
	}); err != nil {
		return 0, err
	}
	total := 0
	for _, srv := range servers {
		cutoff := now.Add(-time.Duration(srv.Retention()) * 24 * time.Hour).UnixNano()
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			n := 0
			err := s.update(func(ctx context.Context, tx pgx.Tx) error {
				rows, err := tx.Query(ctx, `SELECT message_id FROM messages WHERE server_id = $1 AND received_ns < $2 AND status <> $3
					ORDER BY received_ns LIMIT $4 FOR UPDATE`, srv.ID, cutoff, store.StatusQueued, batch)
				if err != nil {
					return err
				}
				ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					return err
				}
				n = len(ids)
				if n == 0 {
					return nil
				}
				if err := purgeBounces(ctx, tx, srv.ID, ids); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `DELETE FROM events WHERE server_id = $1 AND message_id = ANY($2)`, srv.ID, ids); err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `DELETE FROM messages WHERE server_id = $1 AND message_id = ANY($2)`, srv.ID, ids)
				return err
			})
			total += n
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return total, err
			}
			if err != nil {
				return total, fmt.Errorf("store: purging server %d: %w", srv.ID, err)
			}
			if n < batch {
				break
			}
		}
	}
	return total, nil
}

// purgeBounces deletes the bounces of the messages ids, but a bounce
// that still keeps its recipient inactive (store.BounceInactive).
func purgeBounces(ctx context.Context, tx pgx.Tx, serverID int64, ids []string) error {
	bounces, err := docs[store.Bounce](ctx, tx, `SELECT doc FROM bounces WHERE server_id = $1 AND message_id = ANY($2)`, serverID, ids)
	if err != nil {
		return err
	}
	var doomed []int64
	for _, b := range bounces {
		if err := fillBounce(ctx, tx, &b); err != nil {
			return err
		}
		if !b.Inactive {
			doomed = append(doomed, b.ID)
		}
	}
	_, err = tx.Exec(ctx, `DELETE FROM bounces WHERE server_id = $1 AND id = ANY($2)`, serverID, doomed)
	return err
}
