package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

// errStopExport ends an export whose consumer stopped early.
var errStopExport = fmt.Errorf("store: export stopped")

// Export hands over everything the store holds, from one read
// transaction, in store.Record's order.
func (s *Store) Export(ctx context.Context) iter.Seq2[store.Record, error] {
	return func(yield func(store.Record, error) bool) {
		err := s.view(func(tx *bbolt.Tx) error {
			emit := func(r store.Record) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				if !yield(r, nil) {
					return errStopExport
				}
				return nil
			}
			return exportTx(tx, emit)
		})
		if err != nil && err != errStopExport {
			yield(store.Record{}, err)
		}
	}
}

// eachJSON decodes every value of b into a new T and hands it to fn.
func eachJSON[T any](b *bbolt.Bucket, fn func(k []byte, v *T) error) error {
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, raw []byte) error {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("store: %x: %w", k, err)
		}
		return fn(k, v)
	})
}

func exportTx(tx *bbolt.Tx, emit func(store.Record) error) error {
	meta := &store.MetaRecord{Initialized: string(tx.Bucket(bucketMeta).Get(keyInitialized))}
	if meta.Initialized != "" {
		var err error
		if meta.OperatorAccount, err = operatorAccount(tx); err != nil {
			return err
		}
	}
	if err := emit(store.Record{Meta: meta}); err != nil {
		return err
	}
	if err := eachJSON(tx.Bucket(bucketAccounts), func(_ []byte, a *store.Account) error { return emit(store.Record{Account: a}) }); err != nil {
		return err
	}
	if err := eachJSON(tx.Bucket(bucketServers), func(_ []byte, v *store.Server) error { return emit(store.Record{Server: v}) }); err != nil {
		return err
	}
	if err := eachJSON(tx.Bucket(bucketTokens), func(k []byte, t *store.Token) error {
		return emit(store.Record{Token: &store.NewToken{Hash: bytes.Clone(k), Token: *t}})
	}); err != nil {
		return err
	}
	if err := eachJSON(tx.Bucket(bucketDomains), func(_ []byte, d *store.Domain) error { return emit(store.Record{Domain: d}) }); err != nil {
		return err
	}
	if err := eachJSON(tx.Bucket(bucketAccountEvents), func(k []byte, e *store.AccountEvent) error {
		return emit(store.Record{AccountEvent: &store.AccountEventRecord{AccountID: int64(binary.BigEndian.Uint64(k[:8])), Event: *e}})
	}); err != nil {
		return err
	}
	mail := tx.Bucket(bucketMail)
	servers := func(fn func(id int64, mb *bbolt.Bucket) error) error {
		return mail.ForEachBucket(func(k []byte) error { return fn(int64(binary.BigEndian.Uint64(k)), mail.Bucket(k)) })
	}
	if err := servers(func(_ int64, mb *bbolt.Bucket) error {
		raw := mb.Bucket(bucketRaw)
		return eachJSON(mb.Bucket(bucketMessages), func(k []byte, m *store.Message) error {
			return emit(store.Record{Message: &store.MessageRecord{Message: *m, Raw: bytes.Clone(raw.Get(k))}})
		})
	}); err != nil {
		return err
	}
	if err := servers(func(id int64, mb *bbolt.Bucket) error {
		return eachJSON(mb.Bucket(bucketEvents), func(_ []byte, e *store.Event) error {
			return emit(store.Record{Event: &store.EventRecord{ServerID: id, Event: *e}})
		})
	}); err != nil {
		return err
	}
	if err := servers(func(_ int64, mb *bbolt.Bucket) error {
		return eachJSON(mb.Bucket(bucketBounces), func(_ []byte, b *store.Bounce) error { return emit(store.Record{Bounce: b}) })
	}); err != nil {
		return err
	}
	if err := servers(func(id int64, mb *bbolt.Bucket) error {
		return eachJSON(mb.Bucket(bucketSuppressed), func(_ []byte, sup *store.Suppression) error {
			return emit(store.Record{Suppression: &store.SuppressionRecord{ServerID: id, Suppression: *sup}})
		})
	}); err != nil {
		return err
	}
	if err := servers(func(id int64, mb *bbolt.Bucket) error {
		return eachJSON(mb.Bucket(bucketStats), func(k []byte, counts *map[string]int64) error {
			day, stream, tag, err := parseStatKey(k)
			if err != nil {
				return err
			}
			for counter, n := range *counts {
				if err := emit(store.Record{Stat: &store.StatRecord{ServerID: id, Day: day.Format(statDay), Stream: stream, Tag: tag, Counter: counter, N: n}}); err != nil {
					return err
				}
			}
			return nil
		})
	}); err != nil {
		return err
	}
	queue := tx.Bucket(bucketQueue)
	return queue.ForEachBucket(func(k []byte) error {
		return eachJSON(queue.Bucket(k), func(_ []byte, e *store.QueueEntry) error { return emit(store.Record{QueueEntry: e}) })
	})
}

// importChunk is how many records one transaction of an import writes.
const importChunk = 1000

// Import writes every record into this store, which must hold nothing
// yet (store.ErrNotEmpty), keeping every ID.
func (s *Store) Import(ctx context.Context, records iter.Seq2[store.Record, error]) error {
	if err := s.view(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyInitialized) != nil || tx.Bucket(bucketAccounts).Stats().KeyN > 0 {
			return store.ErrNotEmpty
		}
		return nil
	}); err != nil {
		return err
	}
	return store.InChunks(ctx, records, importChunk, func(chunk []store.Record) error {
		return s.update(func(tx *bbolt.Tx) error {
			for _, r := range chunk {
				if err := importRecord(tx, r); err != nil {
					return fmt.Errorf("store: importing %s: %w", r.Kind(), err)
				}
			}
			return nil
		})
	})
}

// setSequence raises b's sequence to id, so new records get later IDs.
func setSequence(b *bbolt.Bucket, id int64) error {
	if uint64(id) > b.Sequence() {
		return b.SetSequence(uint64(id))
	}
	return nil
}

func importRecord(tx *bbolt.Tx, r store.Record) error {
	switch {
	case r.Meta != nil:
		if r.Meta.Initialized == "" {
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyOperator, itob(r.Meta.OperatorAccount)); err != nil {
			return err
		}
		return meta.Put(keyInitialized, []byte(r.Meta.Initialized))
	case r.Account != nil:
		b := tx.Bucket(bucketAccounts)
		if err := setSequence(b, r.Account.ID); err != nil {
			return err
		}
		return putJSON(b, itob(r.Account.ID), r.Account)
	case r.Server != nil:
		b := tx.Bucket(bucketServers)
		if err := setSequence(b, r.Server.ID); err != nil {
			return err
		}
		if err := putJSON(b, itob(r.Server.ID), r.Server); err != nil {
			return err
		}
		return createMailBuckets(tx, r.Server.ID)
	case r.Token != nil:
		return putToken(tx, *r.Token)
	case r.Domain != nil:
		d := r.Domain
		b := tx.Bucket(bucketDomains)
		if err := setSequence(b, d.ID); err != nil {
			return err
		}
		var err error
		if d.Claim {
			err = tx.Bucket(bucketDomainClaims).Put(claimKey(d.Name, d.ID), nil)
		} else {
			err = tx.Bucket(bucketDomainNames).Put([]byte(d.Name), itob(d.ID))
		}
		if err != nil {
			return err
		}
		return putJSON(b, itob(d.ID), d)
	case r.AccountEvent != nil:
		return addAccountEvent(tx, r.AccountEvent.AccountID, r.AccountEvent.Event)
	case r.Message != nil:
		m := r.Message.Message
		mail := tx.Bucket(bucketMail).Bucket(itob(m.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		id := []byte(m.MessageID)
		if err := putJSON(mail.Bucket(bucketMessages), id, m); err != nil {
			return err
		}
		if r.Message.Raw != nil {
			if err := mail.Bucket(bucketRaw).Put(id, r.Message.Raw); err != nil {
				return err
			}
		}
		return mail.Bucket(bucketByTime).Put(timeIDKey(m.ReceivedAt, m.MessageID), nil)
	case r.Event != nil:
		mail := tx.Bucket(bucketMail).Bucket(itob(r.Event.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		events := mail.Bucket(bucketEvents)
		seq, err := events.NextSequence()
		if err != nil {
			return err
		}
		return putJSON(events, eventKey(r.Event.Event.MessageID, seq), r.Event.Event)
	case r.Bounce != nil:
		b := *r.Bounce
		mail := tx.Bucket(bucketMail).Bucket(itob(b.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		bounces, err := mail.CreateBucketIfNotExists(bucketBounces)
		if err != nil {
			return err
		}
		ids, err := mail.CreateBucketIfNotExists(bucketBounceIDs)
		if err != nil {
			return err
		}
		seq, err := bounces.NextSequence()
		if err != nil {
			return err
		}
		b.Seq = seq
		if err := putJSON(bounces, seqKey(seq), b); err != nil {
			return err
		}
		return ids.Put(itob(b.ID), seqKey(seq))
	case r.Suppression != nil:
		mail := tx.Bucket(bucketMail).Bucket(itob(r.Suppression.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		sup := r.Suppression.Suppression
		return putJSON(mail.Bucket(bucketSuppressed), []byte(strings.ToLower(sup.Email)), sup)
	case r.Stat != nil:
		st := r.Stat
		mail := tx.Bucket(bucketMail).Bucket(itob(st.ServerID))
		if mail == nil {
			return store.ErrServerMissing
		}
		b, err := mail.CreateBucketIfNotExists(bucketStats)
		if err != nil {
			return err
		}
		k := []byte(st.Day + "\x00" + st.Stream + "\x00" + st.Tag)
		counts := map[string]int64{}
		if v := b.Get(k); v != nil {
			if err := json.Unmarshal(v, &counts); err != nil {
				return err
			}
		}
		counts[st.Counter] += st.N
		return putJSON(b, k, counts)
	case r.QueueEntry != nil:
		e := *r.QueueEntry
		q, err := tx.Bucket(bucketQueue).CreateBucketIfNotExists(itob(e.ServerID))
		if err != nil {
			return err
		}
		return putJSON(q, queueKey(e), e)
	}
	return fmt.Errorf("store: an empty record")
}

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)
