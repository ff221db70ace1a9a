package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// cursor is a place in one server's queue: entries sort by due time,
// then message ID.
type cursor struct {
	dueNS int64
	id    string
}

func (c cursor) before(o cursor) bool {
	return c.dueNS < o.dueNS || (c.dueNS == o.dueNS && c.id < o.id)
}

// start is before every entry.
var start = cursor{dueNS: -1 << 63}

// atOrBefore reports whether c is not after o.
func (c cursor) atOrBefore(o cursor) bool { return !o.before(c) }

type candidate struct {
	at cursor
	e  store.QueueEntry
}

// serverQueue is a store.ClaimCursor over one server's queue, in a claim
// transaction; its position is a cursor.
type serverQueue struct {
	ctx   context.Context
	tx    pgx.Tx
	s     *Store
	id    int64
	nowNS int64
	next  cursor // it and every entry before it were looked at
	buf   []candidate
	done  bool // nothing after buf
}

// claimFetch is how many entries of one server a claim reads at a time:
// as many as Take may refuse in a row in one window.
const claimFetch = store.ClaimSkipMax

// Next returns the next due entry after sq.next, locking it (entries
// other nodes hold locked are skipped).
func (sq *serverQueue) Next() (store.QueueEntry, bool, error) {
	for len(sq.buf) > 0 && sq.buf[0].at.atOrBefore(sq.next) {
		sq.buf = sq.buf[1:]
	}
	if len(sq.buf) == 0 && !sq.done {
		rows, err := sq.tx.Query(sq.ctx, `SELECT due_ns, message_id, doc FROM queue
			WHERE server_id = $1 AND due_ns <= $2 AND (due_ns, message_id) > ($3, $4)
			ORDER BY due_ns, message_id LIMIT $5 FOR UPDATE SKIP LOCKED`, sq.id, sq.nowNS, sq.next.dueNS, sq.next.id, claimFetch)
		if err != nil {
			return store.QueueEntry{}, false, err
		}
		for rows.Next() {
			var c candidate
			var raw []byte
			if err := rows.Scan(&c.at.dueNS, &c.at.id, &raw); err != nil {
				rows.Close()
				return store.QueueEntry{}, false, err
			}
			if err := json.Unmarshal(raw, &c.e); err != nil {
				rows.Close()
				return store.QueueEntry{}, false, fmt.Errorf("store: queue entry %s: %w", c.at.id, err)
			}
			sq.buf = append(sq.buf, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return store.QueueEntry{}, false, err
		}
		sq.done = len(sq.buf) < claimFetch
	}
	if len(sq.buf) == 0 {
		return store.QueueEntry{}, false, nil
	}
	c := sq.buf[0]
	sq.buf = sq.buf[1:]
	sq.next = c.at
	return c.e, true, nil
}

// Lease stores e leased, in this node's name.
func (sq *serverQueue) Lease(e store.QueueEntry) error {
	doc, err := marshal(e)
	if err != nil {
		return err
	}
	_, err = sq.tx.Exec(sq.ctx, `UPDATE queue SET due_ns = $3, leased = true, locked_by = $4, doc = $5 WHERE server_id = $1 AND message_id = $2`,
		e.ServerID, e.MessageID, e.Due.UnixNano(), sq.s.opts.NodeName, doc)
	return err
}

func (sq *serverQueue) Position() cursor { return sq.next }

func (sq *serverQueue) SkipTo(c cursor) {
	if sq.next.before(c) {
		sq.next = c
	}
}

// claimHints are the store.ClaimHints of this node's claims.
type claimHints struct{ s *Store }

func (h claimHints) Hint(serverID int64) (cursor, bool) {
	h.s.resumeMu.Lock()
	defer h.s.resumeMu.Unlock()
	c, ok := h.s.resume[serverID]
	return c, ok
}

func (h claimHints) SetHint(serverID int64, c cursor, ok bool) {
	h.s.resumeMu.Lock()
	defer h.s.resumeMu.Unlock()
	if !ok {
		delete(h.s.resume, serverID)
		return
	}
	h.s.resume[serverID] = c
}

// Claim leases due entries for delivery as store.ClaimEntries decides,
// under FOR UPDATE SKIP LOCKED, so that nodes claiming together never
// take the same entry. A leased entry is due again when its lease ends,
// whichever node held it.
func (s *Store) Claim(req store.ClaimRequest) ([]store.QueueEntry, error) {
	if req.Max <= 0 {
		return nil, nil
	}
	var out []store.QueueEntry
	nowNS := req.Now.UnixNano()
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT server_id FROM queue WHERE due_ns <= $1 ORDER BY server_id`, nowNS)
		if err != nil {
			return err
		}
		servers, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		out, err = store.ClaimEntries(req, servers, func(id int64) store.ClaimCursor[cursor] {
			return &serverQueue{ctx: ctx, tx: tx, s: s, id: id, nowNS: nowNS, next: start}
		}, claimHints{s})
		return err
	})
	return out, err
}

// lockEntry locks e's queue row, which must still be due at e.Due.
func lockEntry(ctx context.Context, tx pgx.Tx, e store.QueueEntry) error {
	var dueNS int64
	err := tx.QueryRow(ctx, `SELECT due_ns FROM queue WHERE server_id = $1 AND message_id = $2 FOR UPDATE`, e.ServerID, e.MessageID).Scan(&dueNS)
	if errors.Is(err, pgx.ErrNoRows) {
		if ok, err := serverExists(ctx, tx, e.ServerID, false); err != nil {
			return err
		} else if !ok {
			return store.ErrServerMissing
		}
	}
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && dueNS != e.Due.UnixNano()) {
		return fmt.Errorf("store: queue entry %s (due %s): %w", e.MessageID, e.Due.Format(time.RFC3339Nano), store.ErrNotFound)
	}
	return err
}

func putEntry(ctx context.Context, tx pgx.Tx, e store.QueueEntry, lockedBy *string) error {
	doc, err := marshal(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE queue SET due_ns = $3, leased = $4, locked_by = $5, doc = $6 WHERE server_id = $1 AND message_id = $2`,
		e.ServerID, e.MessageID, e.Due.UnixNano(), e.Leased, lockedBy, doc)
	return err
}

// RecordAttempt stores what store.ResolveAttempt decides attempt a
// changes, in one transaction.
func (s *Store) RecordAttempt(a store.Attempt) error {
	e := a.Entry
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := lockEntry(ctx, tx, e); err != nil {
			return err
		}
		var msg store.Message
		if err := getDoc(ctx, tx, &msg, `SELECT doc FROM messages WHERE server_id = $1 AND message_id = $2 FOR UPDATE`, e.ServerID, e.MessageID); err != nil {
			return err
		}
		res, err := store.ResolveAttempt(msg, a)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		if err := queueResolution(ctx, tx, b, msg, &res, a.At); err != nil {
			return err
		}
		if res.Next == nil {
			b.Queue(`DELETE FROM queue WHERE server_id = $1 AND message_id = $2`, e.ServerID, e.MessageID)
		} else {
			next, err := marshal(res.Next)
			if err != nil {
				return err
			}
			b.Queue(`UPDATE queue SET due_ns = $3, leased = false, locked_by = NULL, doc = $4 WHERE server_id = $1 AND message_id = $2`,
				e.ServerID, e.MessageID, res.Next.Due.UnixNano(), next)
		}
		return tx.SendBatch(ctx, b).Close()
	})
}

// queueResolution queues what a resolution changes of msg: its events,
// with the bounces they file (made at once, for their IDs), their webhook
// calls, the stats, the suppressions and the message.
func queueResolution(ctx context.Context, tx pgx.Tx, b *pgx.Batch, msg store.Message, res *store.Resolution, at time.Time) error {
	for i := range res.Events {
		re := &res.Events[i]
		if re.Bounce != nil {
			var err error
			if re.Event.BounceID, err = createBounce(ctx, tx, re.Bounce); err != nil {
				return err
			}
		}
		doc, err := marshal(re.Event)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO events (server_id, message_id, doc) VALUES ($1, $2, $3)`, msg.ServerID, msg.MessageID, doc)
	}
	if err := fileWebhookDeliveries(ctx, tx, b, msg, res.Events, at); err != nil {
		return err
	}
	for _, counter := range res.Counters {
		queueStat(b, msg.ServerID, at, msg.MessageStream, msg.Tag, counter)
	}
	for _, sup := range res.Suppressions {
		doc, err := marshal(sup)
		if err != nil {
			return err
		}
		b.Queue(`INSERT INTO suppressions (server_id, email, doc) VALUES ($1, $2, $3)
			ON CONFLICT (server_id, email) DO UPDATE SET doc = excluded.doc`, msg.ServerID, sup.Email, doc)
	}
	doc, err := marshal(res.Message)
	if err != nil {
		return err
	}
	b.Queue(`UPDATE messages SET status = $3, doc = $4 WHERE server_id = $1 AND message_id = $2`, msg.ServerID, msg.MessageID, res.Message.Status, doc)
	return nil
}

// RecordLateBounce files a bounce or complaint that arrived after the
// attempt, with store.ResolveLateBounce, in one transaction.
func (s *Store) RecordLateBounce(serverID int64, messageID string, o store.Outcome, at time.Time) (store.Bounce, error) {
	var out store.Bounce
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		var msg store.Message
		if err := getDoc(ctx, tx, &msg, `SELECT doc FROM messages WHERE server_id = $1 AND message_id = $2 FOR UPDATE`, serverID, messageID); err != nil {
			return err
		}
		res := store.ResolveLateBounce(msg, o, at)
		b := &pgx.Batch{}
		if err := queueResolution(ctx, tx, b, msg, &res, at); err != nil {
			return err
		}
		out = *res.Events[0].Bounce
		out.ID = res.Events[0].Event.BounceID
		return tx.SendBatch(ctx, b).Close()
	})
	return out, err
}

// Defer hands back a claimed entry, due at due, counting no attempt.
func (s *Store) Defer(e store.QueueEntry, due time.Time) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := lockEntry(ctx, tx, e); err != nil {
			return err
		}
		next := e
		next.Due, next.Leased = due, false
		return putEntry(ctx, tx, next, nil)
	})
}

// ReleaseLeases hands back, due now, the entries this node (node-name)
// holds: at its start, what it held when it stopped. Other nodes' leases
// stay theirs until they end.
func (s *Store) ReleaseLeases(now time.Time) (int, error) {
	released := 0
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		released = 0
		list, err := docs[store.QueueEntry](ctx, tx, `SELECT doc FROM queue WHERE leased AND locked_by = $1 FOR UPDATE`, s.opts.NodeName)
		if err != nil {
			return err
		}
		for _, e := range list {
			e.Due, e.Leased = now, false
			if err := putEntry(ctx, tx, e, nil); err != nil {
				return err
			}
			released++
		}
		if released == 0 {
			return nil
		}
		return notifyQueue(ctx, tx)
	})
	return released, err
}

// NextDue is when the earliest entry falls due.
func (s *Store) NextDue() (time.Time, bool, error) {
	var ns *int64
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT min(due_ns) FROM queue`).Scan(&ns)
	})
	if err != nil || ns == nil {
		return time.Time{}, false, err
	}
	return time.Unix(0, *ns), true, nil
}

// Queue lists up to limit entries, earliest due first.
func (s *Store) Queue(limit int) ([]store.QueueEntry, error) {
	return viewDocs[store.QueueEntry](s, `SELECT doc FROM queue ORDER BY due_ns, server_id, message_id LIMIT $1`, limit)
}

// QueueStats returns each server's queue depth and earliest due time.
func (s *Store) QueueStats() ([]store.QueueStat, error) {
	var out []store.QueueStat
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT server_id, count(*), min(due_ns) FROM queue GROUP BY server_id ORDER BY server_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		out = out[:0]
		for rows.Next() {
			var st store.QueueStat
			var earliest int64
			if err := rows.Scan(&st.ServerID, &st.Depth, &earliest); err != nil {
				return err
			}
			st.Earliest = time.Unix(0, earliest)
			out = append(out, st)
		}
		return rows.Err()
	})
	return out, err
}
