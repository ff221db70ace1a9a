package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/postern/postern/store"
)

// Enqueue stores an accepted message (see store.Accept): its metadata,
// raw MIME, stats, events and queue entry, in one transaction that is
// committed, durably, before it returns. Enqueues that arrive while
// others are being committed share the next transaction (see
// committer); a lone one is sent at once.
func (s *Store) Enqueue(sub store.Submission) error {
	e, err := newEnqueue(sub)
	if err != nil {
		return err
	}
	if s.closed.Load() {
		return store.ErrClosed
	}
	select {
	case s.enqueues <- e:
	case <-s.stop:
		return store.ErrClosed
	}
	return <-e.done
}

// enqueue is one message on its way to a committer.
type enqueue struct {
	sub        store.Submission
	doc, entry []byte
	events     [][]byte
	done       chan error
}

func newEnqueue(sub store.Submission) (*enqueue, error) {
	msg := &sub.Message
	if msg.MessageID == "" || msg.ServerID == 0 {
		return nil, fmt.Errorf("store: enqueue: message without ID or server")
	}
	// Encoded before it queues, so that a committer only sends bytes.
	e := &enqueue{sub: sub, done: make(chan error, 1)}
	var err error
	if e.doc, err = marshal(msg); err != nil {
		return nil, err
	}
	e.events = make([][]byte, len(sub.Events))
	for i, ev := range sub.Events {
		if e.events[i], err = marshal(ev); err != nil {
			return nil, err
		}
	}
	if sub.Entry != nil {
		if e.entry, err = marshal(sub.Entry); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// queue adds e's statements to b.
func (e *enqueue) queue(b *pgx.Batch) {
	msg, sub := &e.sub.Message, e.sub
	if l := sub.Limits; l.PerMinute > 0 || l.PerDay > 0 {
		// Enqueues of one server with limits take turns (a transaction
		// lock), so that what each counts includes the others'.
		b.Queue(`SELECT pg_advisory_xact_lock(hashtext('postern limits'), ($1::bigint % 2147483647)::int)`, msg.ServerID)
		b.Queue(`SELECT postern_check_limits($1, $2, $3, $4::date, $5)`, msg.ServerID,
			msg.ReceivedAt.Add(-time.Minute).UnixNano(), l.PerMinute, msg.ReceivedAt.UTC().Format(statDay), l.PerDay)
	}
	b.Queue(`INSERT INTO messages (server_id, message_id, received_ns, status, doc, raw) VALUES ($1, $2, $3, $4, $5, $6)`,
		msg.ServerID, msg.MessageID, msg.ReceivedAt.UnixNano(), msg.Status, e.doc, sub.Raw)
	queueStat(b, msg.ServerID, msg.ReceivedAt, msg.MessageStream, msg.Tag, store.StatSent)
	for _, ev := range e.events {
		b.Queue(`INSERT INTO events (server_id, message_id, doc) VALUES ($1, $2, $3)`, msg.ServerID, msg.MessageID, ev)
	}
	if e.entry != nil {
		b.Queue(`INSERT INTO queue (server_id, message_id, due_ns, leased, doc) VALUES ($1, $2, $3, false, $4)`,
			msg.ServerID, msg.MessageID, sub.Entry.Due.UnixNano(), e.entry)
		b.Queue(`SELECT pg_notify($1, '')`, queueChannel)
	}
}

// result is what a failed transaction of e alone means to its sender.
func (e *enqueue) result(err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "PT001":
		return &store.LimitError{Max: e.sub.Limits.PerMinute}
	case errors.As(err, &pe) && pe.Code == "PT002":
		return &store.LimitError{PerDay: true, Max: e.sub.Limits.PerDay}
	case isForeignKey(err):
		return store.ErrServerMissing
	case isUnique(err, "messages_pkey"):
		return fmt.Errorf("store: message %s: %w", e.sub.Message.MessageID, store.ErrDuplicate)
	}
	return err
}

// Committers and their transactions.
const (
	// Two: fewer transactions in flight make larger groups.
	// BenchmarkEnqueue, 32 goroutines on the 2-core machine: 7,400
	// messages/s with one, 7,700 with two, 6,000 with four, 4,800 with
	// eight.
	committers = 2  // transactions of enqueues in flight at once
	maxGroup   = 64 // enqueues in one transaction
)

// committer sends the enqueues, each transaction with every one that
// queued while the committers were busy: one commit, one WAL flush, for
// all. A lone enqueue goes at once, alone. When a shared transaction
// fails (one message's duplicate ID, say), each of its enqueues is sent
// again alone, so that one message's refusal is not the others'.
func (s *Store) committer() {
	defer s.committers.Done()
	for {
		var group []*enqueue
		select {
		case e := <-s.enqueues:
			group = append(group, e)
		case <-s.stop:
			return
		}
	fill:
		for len(group) < maxGroup {
			select {
			case e := <-s.enqueues:
				group = append(group, e)
			default:
				break fill
			}
		}
		b := &pgx.Batch{}
		for _, e := range group {
			e.queue(b)
		}
		// One round trip: a batch is one implicit transaction, committed
		// (durably, with synchronous_commit on) before its results return.
		err := s.batch(b)
		if err == nil || len(group) == 1 {
			for _, e := range group {
				e.done <- e.result(err)
			}
			continue
		}
		for _, e := range group {
			b := &pgx.Batch{}
			e.queue(b)
			e.done <- e.result(s.batch(b))
		}
	}
}

// Message returns a message of the server.
func (s *Store) Message(serverID int64, messageID string) (store.Message, error) {
	var m store.Message
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &m, `SELECT doc FROM messages WHERE server_id = $1 AND message_id = $2`, serverID, messageID)
	})
	return m, err
}

// RawMessage returns a message's raw MIME, while it is kept.
func (s *Store) RawMessage(serverID int64, messageID string) ([]byte, error) {
	var raw []byte
	err := s.readOne(func(ctx context.Context, q querier) error {
		err := q.QueryRow(ctx, `SELECT raw FROM messages WHERE server_id = $1 AND message_id = $2`, serverID, messageID).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && raw == nil) {
			return store.ErrNotFound
		}
		return err
	})
	return raw, err
}

// Messages returns a server's newest messages, newest first.
func (s *Store) Messages(serverID int64, limit int) ([]store.Message, error) {
	var out []store.Message
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		var err error
		out, err = docs[store.Message](ctx, tx, `SELECT doc FROM messages WHERE server_id = $1 ORDER BY received_ns DESC, message_id DESC LIMIT $2`, serverID, limit)
		return err
	})
	return out, err
}

// searchChunk is how many messages a filtered search reads per query.
const searchChunk = 1000

// SearchMessages pages through a server's messages, newest first, with
// q's filters; the dates are the index's, the rest store.MessageQuery's
// Match, over at most store.SearchScanLimit messages.
func (s *Store) SearchMessages(serverID int64, q store.MessageQuery) (store.SearchResult, error) {
	var res store.SearchResult
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		res = store.SearchResult{}
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		low, high := int64(0), int64(1<<63-1)
		if !q.From.IsZero() {
			low = max(q.From.UnixNano(), 0)
		}
		if !q.To.IsZero() {
			high = q.To.UnixNano()
		}
		if !q.Filters() {
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM messages WHERE server_id = $1 AND received_ns BETWEEN $2 AND $3`,
				serverID, low, high).Scan(&res.Total); err != nil {
				return err
			}
			if q.Count <= 0 {
				return nil
			}
			var err error
			res.Messages, err = docs[store.Message](ctx, tx, `SELECT doc FROM messages WHERE server_id = $1 AND received_ns BETWEEN $2 AND $3
				ORDER BY received_ns DESC, message_id DESC LIMIT $4 OFFSET $5`, serverID, low, high, q.Count, q.Offset)
			return err
		}
		scanned := 0
		var afterNS int64
		var afterID string
		first := true
		for {
			var rows pgx.Rows
			var err error
			if first {
				rows, err = tx.Query(ctx, `SELECT received_ns, message_id, doc FROM messages WHERE server_id = $1 AND received_ns BETWEEN $2 AND $3
					ORDER BY received_ns DESC, message_id DESC LIMIT $4`, serverID, low, high, searchChunk)
			} else {
				rows, err = tx.Query(ctx, `SELECT received_ns, message_id, doc FROM messages WHERE server_id = $1 AND received_ns >= $2
					AND (received_ns, message_id) < ($3, $4) ORDER BY received_ns DESC, message_id DESC LIMIT $5`,
					serverID, low, afterNS, afterID, searchChunk)
			}
			first = false
			if err != nil {
				return err
			}
			n := 0
			for rows.Next() {
				var m store.Message
				var raw []byte
				if err := rows.Scan(&afterNS, &afterID, &raw); err != nil {
					rows.Close()
					return err
				}
				n++
				if scanned == store.SearchScanLimit {
					res.Capped = true
					break
				}
				scanned++
				if err := json.Unmarshal(raw, &m); err != nil {
					rows.Close()
					return err
				}
				if !q.Match(&m) {
					continue
				}
				if res.Total >= q.Offset && res.Total < q.Offset+q.Count {
					res.Messages = append(res.Messages, m)
				}
				res.Total++
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if res.Capped || n < searchChunk {
				return nil
			}
		}
	})
	return res, err
}

// Events returns a message's events in the order they happened.
func (s *Store) Events(serverID int64, messageID string) ([]store.Event, error) {
	var out []store.Event
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		var err error
		out, err = docs[store.Event](ctx, tx, `SELECT doc FROM events WHERE server_id = $1 AND message_id = $2 ORDER BY seq`, serverID, messageID)
		return err
	})
	return out, err
}

// fillBounce sets a bounce's read-time fields.
func fillBounce(ctx context.Context, tx pgx.Tx, b *store.Bounce) error {
	var hasRaw bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM messages WHERE server_id = $1 AND message_id = $2 AND raw IS NOT NULL)`,
		b.ServerID, b.MessageID).Scan(&hasRaw); err != nil {
		return err
	}
	b.DumpAvailable = hasRaw
	var sup *store.Suppression
	if b.Inactivated {
		var s store.Suppression
		err := getDoc(ctx, tx, &s, `SELECT doc FROM suppressions WHERE server_id = $1 AND email = $2`, b.ServerID, strings.ToLower(b.Email))
		if err == nil {
			sup = &s
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	b.Inactive = store.BounceInactive(*b, sup)
	return nil
}

// Bounce returns a bounce of the server.
func (s *Store) Bounce(serverID, id int64) (store.Bounce, error) {
	var b store.Bounce
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := getDoc(ctx, tx, &b, `SELECT doc FROM bounces WHERE server_id = $1 AND id = $2`, serverID, id); err != nil {
			return err
		}
		return fillBounce(ctx, tx, &b)
	})
	return b, err
}

// ActivateBounce lifts the suppression of the bounce's recipient.
func (s *Store) ActivateBounce(serverID, id int64) (store.Bounce, error) {
	var b store.Bounce
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := getDoc(ctx, tx, &b, `SELECT doc FROM bounces WHERE server_id = $1 AND id = $2`, serverID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM suppressions WHERE server_id = $1 AND email = $2`, serverID, strings.ToLower(b.Email)); err != nil {
			return err
		}
		return fillBounce(ctx, tx, &b)
	})
	return b, err
}

// Bounces pages through a server's bounces, newest first, with q's
// filters, over at most store.SearchScanLimit bounces.
func (s *Store) Bounces(serverID int64, q store.BounceQuery) (store.BounceResult, error) {
	var res store.BounceResult
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		res = store.BounceResult{}
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		list, err := docs[store.Bounce](ctx, tx, `SELECT doc FROM bounces WHERE server_id = $1 ORDER BY seq DESC LIMIT $2`, serverID, store.SearchScanLimit+1)
		if err != nil {
			return err
		}
		if len(list) > store.SearchScanLimit {
			list, res.Capped = list[:store.SearchScanLimit], true
		}
		for i := range list {
			b := &list[i]
			if err := fillBounce(ctx, tx, b); err != nil {
				return err
			}
			if !q.Match(b) {
				continue
			}
			if res.Total >= q.Offset && res.Total < q.Offset+q.Count {
				res.Bounces = append(res.Bounces, *b)
			}
			res.Total++
		}
		return nil
	})
	return res, err
}

// createBounce files b with a new random ID unique in its server, and
// returns the ID.
func createBounce(ctx context.Context, tx pgx.Tx, b *store.Bounce) (int64, error) {
	for {
		b.ID = store.NewBounceID()
		var seq int64
		err := tx.QueryRow(ctx, `INSERT INTO bounces (server_id, id, message_id, doc) VALUES ($1, $2, $3, '{}')
			ON CONFLICT DO NOTHING RETURNING seq`, b.ServerID, b.ID, b.MessageID).Scan(&seq)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // the ID is taken
		}
		if err != nil {
			return 0, err
		}
		b.Seq = uint64(seq)
		doc, err := marshal(b)
		if err != nil {
			return 0, err
		}
		_, err = tx.Exec(ctx, `UPDATE bounces SET doc = $3 WHERE server_id = $1 AND id = $2`, b.ServerID, b.ID, doc)
		return b.ID, err
	}
}
