package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// Export hands over everything the database holds, from one snapshot, in
// store.Record's order.
func (s *Store) Export(ctx context.Context) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			yield(store.Record{}, err)
			return
		}
		defer tx.Rollback(context.Background())
		stopped := false
		emit := func(r store.Record) bool {
			if !yield(r, nil) {
				stopped = true
			}
			return !stopped
		}
		if err := exportTx(ctx, tx, emit); err != nil && !stopped {
			yield(store.Record{}, err)
		}
	}
}

// scanRows runs sql and hands each row to fn, until fn returns false.
func scanRows(ctx context.Context, tx pgx.Tx, sql string, fn func(pgx.Rows) (bool, error)) error {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		more, err := fn(rows)
		if err != nil || !more {
			return err
		}
	}
	return rows.Err()
}

// docRows hands the doc of each row of sql, decoded into a new T, to fn.
func docRows[T any](ctx context.Context, tx pgx.Tx, sql string, fn func(*T) bool) error {
	return scanRows(ctx, tx, sql, func(rows pgx.Rows) (bool, error) {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return false, err
		}
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return false, err
		}
		return fn(v), nil
	})
}

func exportTx(ctx context.Context, tx pgx.Tx, emit func(store.Record) bool) error {
	meta := &store.MetaRecord{}
	rows, err := tx.Query(ctx, `SELECT key, value FROM meta WHERE key IN ('initialized', 'operator')`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return err
		}
		if k == "initialized" {
			meta.Initialized = v
		} else if meta.OperatorAccount, err = strconv.ParseInt(v, 10, 64); err != nil {
			rows.Close()
			return err
		}
	}
	rows.Close()
	if !emit(store.Record{Meta: meta}) {
		return nil
	}
	steps := []func() error{
		func() error {
			return docRows(ctx, tx, `SELECT doc FROM accounts ORDER BY id`, func(v *store.Account) bool { return emit(store.Record{Account: v}) })
		},
		func() error {
			return docRows(ctx, tx, `SELECT doc FROM servers ORDER BY id`, func(v *store.Server) bool { return emit(store.Record{Server: v}) })
		},
		func() error {
			return scanRows(ctx, tx, `SELECT hash, doc FROM tokens ORDER BY hash`, func(rows pgx.Rows) (bool, error) {
				var t store.NewToken
				var raw []byte
				if err := rows.Scan(&t.Hash, &raw); err != nil {
					return false, err
				}
				if err := json.Unmarshal(raw, &t.Token); err != nil {
					return false, err
				}
				return emit(store.Record{Token: &t}), nil
			})
		},
		func() error {
			return docRows(ctx, tx, `SELECT doc FROM domains ORDER BY id`, func(v *store.Domain) bool { return emit(store.Record{Domain: v}) })
		},
		func() error {
			return scanRows(ctx, tx, `SELECT account_id, doc FROM account_events ORDER BY seq`, func(rows pgx.Rows) (bool, error) {
				var r store.AccountEventRecord
				var raw []byte
				if err := rows.Scan(&r.AccountID, &raw); err != nil {
					return false, err
				}
				if err := json.Unmarshal(raw, &r.Event); err != nil {
					return false, err
				}
				return emit(store.Record{AccountEvent: &r}), nil
			})
		},
		func() error {
			return scanRows(ctx, tx, `SELECT doc, raw FROM messages ORDER BY server_id, received_ns, message_id`, func(rows pgx.Rows) (bool, error) {
				var r store.MessageRecord
				var raw []byte
				if err := rows.Scan(&raw, &r.Raw); err != nil {
					return false, err
				}
				if err := json.Unmarshal(raw, &r.Message); err != nil {
					return false, err
				}
				return emit(store.Record{Message: &r}), nil
			})
		},
		func() error {
			return scanRows(ctx, tx, `SELECT server_id, doc FROM events ORDER BY seq`, func(rows pgx.Rows) (bool, error) {
				var r store.EventRecord
				var raw []byte
				if err := rows.Scan(&r.ServerID, &raw); err != nil {
					return false, err
				}
				if err := json.Unmarshal(raw, &r.Event); err != nil {
					return false, err
				}
				return emit(store.Record{Event: &r}), nil
			})
		},
		func() error {
			return docRows(ctx, tx, `SELECT doc FROM bounces ORDER BY server_id, seq`, func(v *store.Bounce) bool { return emit(store.Record{Bounce: v}) })
		},
		func() error {
			return scanRows(ctx, tx, `SELECT server_id, doc FROM suppressions ORDER BY server_id, email`, func(rows pgx.Rows) (bool, error) {
				var r store.SuppressionRecord
				var raw []byte
				if err := rows.Scan(&r.ServerID, &raw); err != nil {
					return false, err
				}
				if err := json.Unmarshal(raw, &r.Suppression); err != nil {
					return false, err
				}
				return emit(store.Record{Suppression: &r}), nil
			})
		},
		func() error {
			return scanRows(ctx, tx, `SELECT server_id, to_char(day, 'YYYY-MM-DD'), stream, tag, counter, sum(n)::bigint FROM stats
				GROUP BY server_id, day, stream, tag, counter ORDER BY server_id, day, stream, tag, counter`,
				func(rows pgx.Rows) (bool, error) {
					var r store.StatRecord
					if err := rows.Scan(&r.ServerID, &r.Day, &r.Stream, &r.Tag, &r.Counter, &r.N); err != nil {
						return false, err
					}
					return emit(store.Record{Stat: &r}), nil
				})
		},
		func() error {
			return docRows(ctx, tx, `SELECT doc FROM queue ORDER BY server_id, due_ns, message_id`, func(v *store.QueueEntry) bool { return emit(store.Record{QueueEntry: v}) })
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// importChunk is how many records one transaction of an import writes.
const importChunk = 1000

// Import writes every record into this database, which must hold nothing
// yet (store.ErrNotEmpty), keeping every ID.
func (s *Store) Import(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	if err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		full, err := exists(ctx, tx, `SELECT 1 FROM meta WHERE key = 'initialized' UNION ALL SELECT 1 FROM accounts`)
		if err == nil && full {
			return store.ErrNotEmpty
		}
		return err
	}); err != nil {
		return err
	}
	err := store.InChunks(ctx, records, importChunk, func(chunk []store.Record) error {
		return s.update(func(ctx context.Context, tx pgx.Tx) error {
			b := &pgx.Batch{}
			for _, r := range chunk {
				if err := queueImport(b, r); err != nil {
					return fmt.Errorf("store: importing %s: %w", r.Kind(), err)
				}
			}
			return tx.SendBatch(ctx, b).Close()
		})
	})
	if err != nil {
		return err
	}
	// New rows take IDs after the imported ones.
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		for _, table := range []string{"accounts", "servers", "domains"} {
			if _, err := tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), coalesce(max(id), 0) + 1, false) FROM `+table, table); err != nil {
				return err
			}
		}
		return nil
	})
}

func queueImport(b *pgx.Batch, r store.Record) error {
	var doc []byte
	var err error
	switch {
	case r.Meta != nil:
		if r.Meta.Initialized == "" {
			return nil
		}
		b.Queue(`INSERT INTO meta (key, value) VALUES ('initialized', $1), ('operator', $2)`, r.Meta.Initialized, strconv.FormatInt(r.Meta.OperatorAccount, 10))
		return nil
	case r.Account != nil:
		if doc, err = marshal(r.Account); err == nil {
			b.Queue(`INSERT INTO accounts (id, doc) VALUES ($1, $2)`, r.Account.ID, doc)
		}
	case r.Server != nil:
		if doc, err = marshal(r.Server); err == nil {
			b.Queue(`INSERT INTO servers (id, account_id, name_key, doc) VALUES ($1, $2, $3, $4)`, r.Server.ID, r.Server.AccountID, strings.ToLower(r.Server.Name), doc)
		}
	case r.Token != nil:
		t := r.Token
		if doc, err = marshal(t.Token); err == nil {
			b.Queue(`INSERT INTO tokens (hash, kind, account_id, server_id, prefix, doc) VALUES ($1, $2, $3, $4, $5, $6)`,
				t.Hash, t.Kind, t.AccountID, t.ServerID, t.Prefix, doc)
		}
	case r.Domain != nil:
		d := r.Domain
		if doc, err = marshal(d); err == nil {
			b.Queue(`INSERT INTO domains (id, account_id, name, claim, doc) VALUES ($1, $2, $3, $4, $5)`, d.ID, d.AccountID, d.Name, d.Claim, doc)
		}
	case r.AccountEvent != nil:
		if doc, err = marshal(r.AccountEvent.Event); err == nil {
			b.Queue(`INSERT INTO account_events (account_id, doc) VALUES ($1, $2)`, r.AccountEvent.AccountID, doc)
		}
	case r.Message != nil:
		m := r.Message.Message
		if doc, err = marshal(m); err == nil {
			b.Queue(`INSERT INTO messages (server_id, message_id, received_ns, status, doc, raw) VALUES ($1, $2, $3, $4, $5, $6)`,
				m.ServerID, m.MessageID, m.ReceivedAt.UnixNano(), m.Status, doc, r.Message.Raw)
		}
	case r.Event != nil:
		if doc, err = marshal(r.Event.Event); err == nil {
			b.Queue(`INSERT INTO events (server_id, message_id, doc) VALUES ($1, $2, $3)`, r.Event.ServerID, r.Event.Event.MessageID, doc)
		}
	case r.Bounce != nil:
		if doc, err = marshal(r.Bounce); err == nil {
			b.Queue(`INSERT INTO bounces (server_id, id, message_id, doc) VALUES ($1, $2, $3, $4)`, r.Bounce.ServerID, r.Bounce.ID, r.Bounce.MessageID, doc)
		}
	case r.Suppression != nil:
		sup := r.Suppression.Suppression
		if doc, err = marshal(sup); err == nil {
			b.Queue(`INSERT INTO suppressions (server_id, email, doc) VALUES ($1, $2, $3)`, r.Suppression.ServerID, strings.ToLower(sup.Email), doc)
		}
	case r.Stat != nil:
		st := r.Stat
		b.Queue(`INSERT INTO stats (server_id, day, stream, tag, counter, n) VALUES ($1, $2::date, $3, $4, $5, $6)
			ON CONFLICT (server_id, day, stream, tag, counter, shard) DO UPDATE SET n = stats.n + excluded.n`,
			st.ServerID, st.Day, st.Stream, st.Tag, st.Counter, st.N)
	case r.QueueEntry != nil:
		e := r.QueueEntry
		if doc, err = marshal(e); err == nil {
			b.Queue(`INSERT INTO queue (server_id, message_id, due_ns, leased, doc) VALUES ($1, $2, $3, $4, $5)`,
				e.ServerID, e.MessageID, e.Due.UnixNano(), e.Leased, doc)
		}
	default:
		return errors.New("an empty record")
	}
	return err
}

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)
