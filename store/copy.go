package store

import (
	"context"
	"fmt"
	"iter"
)

// Record is one thing a backend holds, as postern store copy moves it
// from one backend to another: exactly one field is set. A backend
// exports its records in the order of the fields below, which is the
// order in which they can be imported (an account before its servers, a
// message before its events...).
type Record struct {
	Meta         *MetaRecord
	Account      *Account
	Server       *Server
	Token        *NewToken
	Domain       *Domain
	AccountEvent *AccountEventRecord
	Message      *MessageRecord
	Event        *EventRecord
	Bounce       *Bounce
	Suppression  *SuppressionRecord
	Stat         *StatRecord
	QueueEntry   *QueueEntry
}

// MetaRecord is the installation's own state.
type MetaRecord struct {
	Initialized     string // when Initialize ran (RFC 3339), "" if never
	OperatorAccount int64
}

// AccountEventRecord is one entry of an account's log.
type AccountEventRecord struct {
	AccountID int64
	Event     AccountEvent
}

// MessageRecord is a message and its raw MIME.
type MessageRecord struct {
	Message Message
	Raw     []byte
}

// EventRecord is one event of a message of a server.
type EventRecord struct {
	ServerID int64
	Event    Event
}

// SuppressionRecord is one inactive recipient of a server.
type SuppressionRecord struct {
	ServerID    int64
	Suppression Suppression
}

// StatRecord is one daily counter of a server.
type StatRecord struct {
	ServerID int64
	Day      string // 2006-01-02
	Stream   string
	Tag      string
	Counter  string
	N        int64
}

// Kind names the field of r that is set, as counts name it.
func (r Record) Kind() string {
	switch {
	case r.Meta != nil:
		return "meta"
	case r.Account != nil:
		return "accounts"
	case r.Server != nil:
		return "servers"
	case r.Token != nil:
		return "tokens"
	case r.Domain != nil:
		return "domains"
	case r.AccountEvent != nil:
		return "account events"
	case r.Message != nil:
		return "messages"
	case r.Event != nil:
		return "events"
	case r.Bounce != nil:
		return "bounces"
	case r.Suppression != nil:
		return "suppressions"
	case r.Stat != nil:
		return "daily counters"
	case r.QueueEntry != nil:
		return "queue entries"
	}
	return ""
}

// Kinds are the record kinds in export order.
var Kinds = []string{"meta", "accounts", "servers", "tokens", "domains", "account events", "messages", "events", "bounces", "suppressions", "daily counters", "queue entries"}

// Exporter is a backend that can hand over everything it holds, for
// postern store copy. The records come from one consistent view.
type Exporter interface {
	Export(ctx context.Context) iter.Seq2[Record, error]
}

// Importer is a backend that can take everything another holds. It
// refuses (ErrNotEmpty) unless it holds nothing yet, and keeps every ID.
type Importer interface {
	Import(ctx context.Context, records iter.Seq2[Record, error]) error
}

// Copy moves everything src holds into dst, which must be empty, and
// checks the result: it counts each kind of record on the way in and
// counts dst's own export afterwards, which must match. progress, if not
// nil, sees every record copied.
func Copy(ctx context.Context, src Exporter, dst Importer, progress func(Record)) (map[string]int, error) {
	copied := map[string]int{}
	counting := func(yield func(Record, error) bool) {
		for r, err := range src.Export(ctx) {
			if err == nil {
				copied[r.Kind()]++
				if progress != nil {
					progress(r)
				}
			}
			if !yield(r, err) {
				return
			}
		}
	}
	if err := dst.Import(ctx, counting); err != nil {
		return copied, err
	}
	check, ok := dst.(Exporter)
	if !ok {
		return copied, nil
	}
	found := map[string]int{}
	for r, err := range check.Export(ctx) {
		if err != nil {
			return copied, fmt.Errorf("store: checking the copy: %w", err)
		}
		found[r.Kind()]++
	}
	for _, kind := range Kinds {
		if copied[kind] != found[kind] {
			return copied, fmt.Errorf("store: the copy holds %d %s, the source %d", found[kind], kind, copied[kind])
		}
	}
	return copied, nil
}

// InChunks hands records to write n at a time, the last chunk shorter:
// an Importer's transactions. It stops at the first error, or when ctx is
// done.
func InChunks(ctx context.Context, records iter.Seq2[Record, error], n int, write func([]Record) error) error {
	chunk := make([]Record, 0, n)
	for r, err := range records {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if chunk = append(chunk, r); len(chunk) == n {
			if err := write(chunk); err != nil {
				return err
			}
			chunk = chunk[:0]
		}
	}
	if len(chunk) == 0 {
		return nil
	}
	return write(chunk)
}
