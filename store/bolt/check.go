package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Check verifies the store's consistency: bbolt's own page checks, then
// Postern's invariants: every server has its mail bucket; every message has
// its raw MIME and its time index entry and no index entry dangles; every
// queue entry names an existing message of its server and no queue is
// left without its server; every token names an existing principal (a
// server token the server's own account, an account token a role); the
// operator account exists; every session has its user, its account and
// its index entry, and no index entry dangles. It returns all problems found, joined.
//
// Check runs in a write transaction that it rolls back: bbolt's page check
// reads the freelist, which a commit running beside a read transaction
// changes under it (false "reachable freed" reports under load). Holding
// the writer lock pauses commits for the check's duration, and writes
// nothing.
func (s *Store) Check() error {
	select {
	case <-s.closing:
		return store.ErrClosed
	default:
	}
	var problems []error
	err := s.db.Update(func(tx *bbolt.Tx) error {
		var err error
		if problems, err = checkTx(tx); err != nil {
			return err
		}
		return errRollback
	})
	if err != nil && !errors.Is(err, errRollback) {
		problems = append(problems, err)
	}
	return errors.Join(problems...)
}

// errRollback ends Check's transaction without committing it.
var errRollback = errors.New("store: check done")

// checkTx returns what is wrong in tx; an error means the check itself
// could not run.
func checkTx(tx *bbolt.Tx) (problems []error, err error) {
	for err := range tx.Check() {
		problems = append(problems, fmt.Errorf("bbolt: %w", err))
	}
	servers := tx.Bucket(bucketServers)
	mail := tx.Bucket(bucketMail)
	accounts := tx.Bucket(bucketAccounts)
	if err := servers.ForEach(func(k, v []byte) error {
		var srv store.Server
		if err := json.Unmarshal(v, &srv); err != nil {
			problems = append(problems, fmt.Errorf("server %x: %w", k, err))
			return nil
		}
		if accounts.Get(itob(srv.AccountID)) == nil {
			problems = append(problems, fmt.Errorf("server %d: account %d missing", srv.ID, srv.AccountID))
		}
		mb := mail.Bucket(k)
		if mb == nil {
			problems = append(problems, fmt.Errorf("server %d: mail bucket missing", srv.ID))
			return nil
		}
		problems = append(problems, checkMail(srv.ID, mb)...)
		problems = append(problems, checkMailExtras(srv.ID, mb)...)
		return nil
	}); err != nil {
		return problems, err
	}
	if err := mail.ForEachBucket(func(k []byte) error {
		if servers.Get(k) == nil {
			problems = append(problems, fmt.Errorf("mail bucket %x: no such server", k))
		}
		return nil
	}); err != nil {
		return problems, err
	}
	if op, err := operatorAccount(tx); err == nil && accounts.Get(itob(op)) == nil {
		problems = append(problems, fmt.Errorf("operator account %d missing", op))
	}
	problems = append(problems, checkDomains(tx)...)
	problems = append(problems, checkSessions(tx)...)
	queue := tx.Bucket(bucketQueue)
	if err := queue.ForEachBucket(func(serverKey []byte) error {
		if servers.Get(serverKey) == nil {
			problems = append(problems, fmt.Errorf("queue %x: no such server", serverKey))
		}
		mb := mail.Bucket(serverKey)
		return queue.Bucket(serverKey).ForEach(func(k, v []byte) error {
			var e store.QueueEntry
			if err := json.Unmarshal(v, &e); err != nil {
				problems = append(problems, fmt.Errorf("queue %x: %w", k, err))
				return nil
			}
			if string(itob(e.ServerID)) != string(serverKey) || string(queueKey(e)) != string(k) {
				problems = append(problems, fmt.Errorf("queue entry %s: key does not match its value", e.MessageID))
			}
			if mb == nil || mb.Bucket(bucketMessages).Get([]byte(e.MessageID)) == nil {
				problems = append(problems, fmt.Errorf("queue entry %s: message of server %d missing", e.MessageID, e.ServerID))
			}
			if len(e.Pending) == 0 {
				problems = append(problems, fmt.Errorf("queue entry %s: no pending recipient", e.MessageID))
			}
			return nil
		})
	}); err != nil {
		return problems, err
	}
	err = tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
		var t store.Token
		if err := json.Unmarshal(v, &t); err != nil {
			problems = append(problems, fmt.Errorf("token %s: %w", t.Prefix, err))
			return nil
		}
		switch t.Kind {
		case store.KindServer:
			var srv store.Server
			if err := getJSON(servers, itob(t.ServerID), &srv); err != nil {
				problems = append(problems, fmt.Errorf("token %s: server %d missing", t.Prefix, t.ServerID))
			} else if srv.AccountID != t.AccountID {
				problems = append(problems, fmt.Errorf("token %s: account %d, but its server %d is account %d's", t.Prefix, t.AccountID, t.ServerID, srv.AccountID))
			}
		case store.KindAccount:
			if accounts.Get(itob(t.AccountID)) == nil {
				problems = append(problems, fmt.Errorf("token %s: account %d missing", t.Prefix, t.AccountID))
			}
			if t.Role != store.RoleOwner && t.Role != store.RoleAdmin {
				problems = append(problems, fmt.Errorf("token %s: role %q", t.Prefix, t.Role))
			}
		default:
			problems = append(problems, fmt.Errorf("token %s: kind %q", t.Prefix, t.Kind))
		}
		return nil
	})
	return problems, err
}

func checkMail(serverID int64, mb *bbolt.Bucket) []error {
	var problems []error
	msgs, raw, byTime := mb.Bucket(bucketMessages), mb.Bucket(bucketRaw), mb.Bucket(bucketByTime)
	if msgs == nil || raw == nil || byTime == nil {
		return []error{fmt.Errorf("server %d: mail sub-bucket missing", serverID)}
	}
	indexed := 0
	_ = byTime.ForEach(func(k, _ []byte) error {
		indexed++
		if len(k) < 8 || msgs.Get(k[8:]) == nil {
			problems = append(problems, fmt.Errorf("server %d: index entry %x has no message", serverID, k))
		}
		return nil
	})
	count := 0
	_ = msgs.ForEach(func(k, v []byte) error {
		count++
		var m store.Message
		if err := json.Unmarshal(v, &m); err != nil {
			problems = append(problems, fmt.Errorf("server %d: message %s: %w", serverID, k, err))
			return nil
		}
		if m.ServerID != serverID {
			problems = append(problems, fmt.Errorf("server %d: message %s claims server %d", serverID, k, m.ServerID))
		}
		if raw.Get(k) == nil {
			problems = append(problems, fmt.Errorf("server %d: message %s has no raw MIME", serverID, k))
		}
		if byTime.Get(timeIDKey(m.ReceivedAt, m.MessageID)) == nil {
			problems = append(problems, fmt.Errorf("server %d: message %s not in the time index", serverID, k))
		}
		return nil
	})
	if count != indexed {
		problems = append(problems, fmt.Errorf("server %d: %d messages but %d index entries", serverID, count, indexed))
	}
	if n := raw.Stats().KeyN; n != count {
		problems = append(problems, fmt.Errorf("server %d: %d messages but %d raw bodies", serverID, count, n))
	}
	return problems
}

// checkSessions finds sessions without their user, account or index
// entry, and index entries without their session.
func checkSessions(tx *bbolt.Tx) []error {
	var problems []error
	sessions, index := tx.Bucket(bucketSessions), tx.Bucket(bucketUserSessions)
	users, accounts := tx.Bucket(bucketUsers), tx.Bucket(bucketAccounts)
	err := sessions.ForEach(func(k, v []byte) error {
		var sess store.Session
		if err := json.Unmarshal(v, &sess); err != nil {
			problems = append(problems, fmt.Errorf("session %.8s: %w", k, err))
			return nil
		}
		if sess.Hash != string(k) {
			problems = append(problems, fmt.Errorf("session %.8s: key does not match its value", k))
		}
		if users.Get(itob(sess.UserID)) == nil {
			problems = append(problems, fmt.Errorf("session %.8s: user %d missing", k, sess.UserID))
		}
		if accounts.Get(itob(sess.AccountID)) == nil {
			problems = append(problems, fmt.Errorf("session %.8s: account %d missing", k, sess.AccountID))
		}
		if index.Get(userSessionKey(sess.UserID, string(k))) == nil {
			problems = append(problems, fmt.Errorf("session %.8s: not in its user's index", k))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	err = index.ForEach(func(k, _ []byte) error {
		var sess store.Session
		if len(k) < 8 || getJSON(sessions, k[8:], &sess) != nil {
			problems = append(problems, fmt.Errorf("user session index entry %x: no such session", k))
		} else if !bytes.Equal(k[:8], itob(sess.UserID)) {
			problems = append(problems, fmt.Errorf("user session index entry %x: the session is user %d's", k, sess.UserID))
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err)
	}
	return problems
}
