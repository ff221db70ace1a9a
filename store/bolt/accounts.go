package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// Initialize creates the first account (the installation's operator
// account, see OperatorAccount) with its owner token and a first server
// with its token, all in one transaction. It fails with
// ErrInitialized, changing nothing, if the store was initialised before.
func (s *Store) Initialize(p store.InitParams, now time.Time) (store.Account, store.Server, error) {
	var acct store.Account
	var srv store.Server
	err := s.update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyInitialized) != nil {
			return store.ErrInitialized
		}
		var err error
		acct, err = createAccount(tx, p.AccountName, now)
		if err != nil {
			return err
		}
		at := p.AccountToken
		at.Kind, at.AccountID, at.CreatedAt = store.KindAccount, acct.ID, now
		if err := putToken(tx, at); err != nil {
			return err
		}
		srv = p.Server
		srv.AccountID = acct.ID
		if srv, err = createServer(tx, srv, now); err != nil {
			return err
		}
		st := p.ServerToken
		st.Kind, st.AccountID, st.ServerID, st.CreatedAt = store.KindServer, acct.ID, srv.ID, now
		if err := putToken(tx, st); err != nil {
			return err
		}
		if err := meta.Put(keyOperator, itob(acct.ID)); err != nil {
			return err
		}
		return meta.Put(keyInitialized, []byte(now.UTC().Format(time.RFC3339)))
	})
	return acct, srv, err
}

// Initialized reports whether Initialize has run on this store.
func (s *Store) Initialized() (bool, error) {
	var ok bool
	err := s.view(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketMeta).Get(keyInitialized) != nil
		return nil
	})
	return ok, err
}

// CreateAccount adds an account.
func (s *Store) CreateAccount(name string, now time.Time) (store.Account, error) {
	var a store.Account
	err := s.update(func(tx *bbolt.Tx) error {
		var err error
		a, err = createAccount(tx, name, now)
		return err
	})
	return a, err
}

// CreateServer adds a server to an existing account, with its first token.
func (s *Store) CreateServer(srv store.Server, token store.NewToken, now time.Time) (store.Server, error) {
	var out store.Server
	err := s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(itob(srv.AccountID)) == nil {
			return fmt.Errorf("store: account %d: %w", srv.AccountID, store.ErrNotFound)
		}
		if err := capPerAccount(tx.Bucket(bucketServers), srv.AccountID, s.opts.Caps.ServersPerAccount, "max-servers-per-account", "servers per account"); err != nil {
			return err
		}
		var err error
		if out, err = createServer(tx, srv, now); err != nil {
			return err
		}
		token.Kind, token.AccountID, token.ServerID, token.CreatedAt = store.KindServer, out.AccountID, out.ID, now
		return putToken(tx, token)
	})
	return out, err
}

// UpdateServer replaces a server's editable fields; its account,
// DeliveryType, InboundHash and creation time stay. A name another server
// of the account has (in any case) is refused with ErrDuplicate.
func (s *Store) UpdateServer(srv store.Server) error {
	return s.updateCredentials(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketServers)
		old := b.Get(itob(srv.ID))
		if old == nil {
			return store.ErrNotFound
		}
		var prev store.Server
		if err := json.Unmarshal(old, &prev); err != nil {
			return err
		}
		srv = store.UpdatedServer(prev, srv)
		if err := uniqueServerName(b, srv); err != nil {
			return err
		}
		return putJSON(b, itob(srv.ID), srv)
	})
}

// uniqueServerName fails with ErrDuplicate if another server of srv's
// account has srv's name, in any case.
func uniqueServerName(b *bbolt.Bucket, srv store.Server) error {
	return b.ForEach(func(_, v []byte) error {
		var other store.Server
		if err := json.Unmarshal(v, &other); err != nil {
			return err
		}
		if store.SameServerName(other, srv) {
			return fmt.Errorf("store: server name %q: %w", srv.Name, store.ErrDuplicateName)
		}
		return nil
	})
}

// Server returns one server.
func (s *Store) Server(id int64) (store.Server, error) {
	var srv store.Server
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		srv, err = s.serverIn(tx, id)
		return err
	})
	return srv, err
}

// serverIn returns server id as tx sees it.
func (s *Store) serverIn(tx *bbolt.Tx, id int64) (store.Server, error) {
	key := itob(id)
	raw := tx.Bucket(bucketServers).Get(key)
	if raw == nil {
		return store.Server{}, store.ErrNotFound
	}
	return s.servers.decode(key, raw)
}

// Account returns one account.
func (s *Store) Account(id int64) (store.Account, error) {
	var a store.Account
	err := s.view(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketAccounts), itob(id), &a)
	})
	return a, err
}

// UpdateAccount replaces an account's name and settings; its ID and
// creation time stay.
func (s *Store) UpdateAccount(a store.Account) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAccounts)
		var old store.Account
		if err := getJSON(b, itob(a.ID), &old); err != nil {
			return err
		}
		a.CreatedAt = old.CreatedAt
		return putJSON(b, itob(a.ID), a)
	})
}

// LookupToken returns the record of the token whose hash is given.
func (s *Store) LookupToken(hash []byte) (store.Token, error) {
	var t store.Token
	err := s.view(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketTokens), hash, &t)
	})
	return t, err
}

// AddToken stores another token for an existing account or server.
func (s *Store) AddToken(t store.NewToken) error {
	return s.update(func(tx *bbolt.Tx) error {
		switch t.Kind {
		case store.KindServer:
			if tx.Bucket(bucketServers).Get(itob(t.ServerID)) == nil {
				return store.ErrServerMissing
			}
		case store.KindAccount:
			if tx.Bucket(bucketAccounts).Get(itob(t.AccountID)) == nil {
				return fmt.Errorf("store: account %d: %w", t.AccountID, store.ErrNotFound)
			}
		default:
			return fmt.Errorf("store: token kind %q", t.Kind)
		}
		return putToken(tx, t)
	})
}

func createAccount(tx *bbolt.Tx, name string, now time.Time) (store.Account, error) {
	b := tx.Bucket(bucketAccounts)
	seq, err := b.NextSequence()
	if err != nil {
		return store.Account{}, err
	}
	a := store.Account{ID: int64(seq), Name: name, CreatedAt: now.UTC()}
	return a, putJSON(b, itob(a.ID), a)
}

func createServer(tx *bbolt.Tx, srv store.Server, now time.Time) (store.Server, error) {
	b := tx.Bucket(bucketServers)
	srv = store.NewServer(srv, now)
	if err := uniqueServerName(b, srv); err != nil {
		return store.Server{}, err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return store.Server{}, err
	}
	srv.ID = int64(seq)
	if err := putJSON(b, itob(srv.ID), srv); err != nil {
		return store.Server{}, err
	}
	return srv, createMailBuckets(tx, srv.ID)
}

// createMailBuckets makes a new server's buckets of mail.
func createMailBuckets(tx *bbolt.Tx, serverID int64) error {
	mail, err := tx.Bucket(bucketMail).CreateBucket(itob(serverID))
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketMessages, bucketRaw, bucketByTime, bucketEvents, bucketSuppressed} {
		if _, err := mail.CreateBucket(name); err != nil {
			return err
		}
	}
	return nil
}

func putToken(tx *bbolt.Tx, t store.NewToken) error {
	if len(t.Hash) == 0 {
		return fmt.Errorf("store: token without hash")
	}
	b := tx.Bucket(bucketTokens)
	if b.Get(t.Hash) != nil {
		return fmt.Errorf("store: token: %w", store.ErrDuplicate)
	}
	return putJSON(b, t.Hash, t.Token)
}

// itob encodes an ID as a big-endian key, so keys sort by ID.
func itob(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func putJSON(b *bbolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bbolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return store.ErrNotFound
	}
	return json.Unmarshal(data, v)
}
