package bolt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// keyOperator (in the meta bucket) holds the operator account's ID.
var keyOperator = []byte("operator")

// OperatorAccount returns the ID of the installation's operator account:
// the one Initialize created. A store initialised before the operator was
// recorded has account 1 as its operator (Initialize always created it
// first). It fails with ErrNotFound on a store not initialised.
func (s *Store) OperatorAccount() (int64, error) {
	var id int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		id, err = operatorAccount(tx)
		return err
	})
	return id, err
}

func operatorAccount(tx *bbolt.Tx) (int64, error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyOperator); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v)), nil
	}
	if meta.Get(keyInitialized) != nil {
		return 1, nil
	}
	return 0, store.ErrNotFound
}

// ListServers returns an account's servers, pinned ones first, then by
// name regardless of case.
func (s *Store) ListServers(accountID int64) ([]store.Server, error) {
	var out []store.Server
	err := s.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		return tx.Bucket(bucketServers).ForEach(func(_, v []byte) error {
			var srv store.Server
			if err := json.Unmarshal(v, &srv); err != nil {
				return err
			}
			if srv.AccountID == accountID {
				out = append(out, srv)
			}
			return nil
		})
	})
	store.SortServers(out)
	return out, err
}

// DeleteServer removes a server of an account with everything that is
// its own: its mail bucket (messages, bodies, events, suppressions), its
// queue and its tokens, in one transaction. The account's domains stay.
// A server of another account is ErrNotFound, as a missing one. A
// delivery in flight for the server finds it gone when it reports, and
// its entry does not come back.
func (s *Store) DeleteServer(accountID, serverID int64) (store.Server, error) {
	var srv store.Server
	err := s.updateCredentials(func(tx *bbolt.Tx) error {
		servers := tx.Bucket(bucketServers)
		if err := getJSON(servers, itob(serverID), &srv); err != nil {
			return err
		}
		if srv.AccountID != accountID {
			return store.ErrNotFound
		}
		key := itob(serverID)
		if err := servers.Delete(key); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketMail, bucketQueue} {
			b := tx.Bucket(name)
			if b.Bucket(key) == nil {
				continue
			}
			if err := b.DeleteBucket(key); err != nil {
				return err
			}
		}
		return deleteTokens(tx, func(t store.Token) bool { return t.Kind == store.KindServer && t.ServerID == serverID })
	})
	return srv, err
}

// deleteTokens removes every token that match selects.
func deleteTokens(tx *bbolt.Tx, match func(store.Token) bool) error {
	b := tx.Bucket(bucketTokens)
	var doomed [][]byte
	if err := b.ForEach(func(k, v []byte) error {
		var t store.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if match(t) {
			doomed = append(doomed, slices.Clone(k))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range doomed {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// tokens returns the tokens match selects, oldest first.
func tokens(tx *bbolt.Tx, match func(store.Token) bool) ([]store.Token, error) {
	var out []store.Token
	err := tx.Bucket(bucketTokens).ForEach(func(_, v []byte) error {
		var t store.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		if match(t) {
			out = append(out, t)
		}
		return nil
	})
	store.SortTokens(out)
	return out, err
}

func serverTokens(id int64) func(store.Token) bool {
	return func(t store.Token) bool { return t.Kind == store.KindServer && t.ServerID == id }
}

func accountTokens(id int64) func(store.Token) bool {
	return func(t store.Token) bool { return t.Kind == store.KindAccount && t.AccountID == id }
}

// ServerTokens returns a server's tokens (their records: prefix and
// creation time, never the token), oldest first.
func (s *Store) ServerTokens(serverID int64) ([]store.Token, error) {
	var out []store.Token
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = tokens(tx, serverTokens(serverID))
		return err
	})
	return out, err
}

// AccountTokens returns an account's own tokens (not its servers'),
// oldest first.
func (s *Store) AccountTokens(accountID int64) ([]store.Token, error) {
	var out []store.Token
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		out, err = tokens(tx, accountTokens(accountID))
		return err
	})
	return out, err
}

// AddServerToken stores another token for a server. Prefixes name tokens
// in listings and revocations, so a prefix another token of the server
// has is refused with ErrDuplicate (the caller makes a new token).
func (s *Store) AddServerToken(serverID int64, t store.NewToken, now time.Time) (store.Token, error) {
	err := s.update(func(tx *bbolt.Tx) error {
		var srv store.Server
		if err := getJSON(tx.Bucket(bucketServers), itob(serverID), &srv); err != nil {
			return store.ErrServerMissing
		}
		t.Kind, t.AccountID, t.ServerID, t.Role, t.CreatedAt = store.KindServer, srv.AccountID, srv.ID, "", now.UTC()
		if limit := s.opts.Caps.TokensPerServer; limit > 0 {
			existing, err := tokens(tx, serverTokens(serverID))
			if err != nil {
				return err
			}
			if len(existing) >= limit {
				return &store.CapError{Setting: "max-tokens-per-server", What: "tokens per server", Limit: limit}
			}
		}
		return putUniqueToken(tx, t, serverTokens(serverID))
	})
	return t.Token, err
}

// AddAccountToken stores another token of role for an account, with
// AddServerToken's rule on prefixes.
func (s *Store) AddAccountToken(accountID int64, role store.Role, t store.NewToken, now time.Time) (store.Token, error) {
	if role != store.RoleOwner && role != store.RoleAdmin {
		return store.Token{}, fmt.Errorf("store: token role %q", role)
	}
	err := s.update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(itob(accountID)) == nil {
			return fmt.Errorf("store: account %d: %w", accountID, store.ErrNotFound)
		}
		t.Kind, t.AccountID, t.ServerID, t.Role, t.CreatedAt = store.KindAccount, accountID, 0, role, now.UTC()
		return putUniqueToken(tx, t, accountTokens(accountID))
	})
	return t.Token, err
}

func putUniqueToken(tx *bbolt.Tx, t store.NewToken, same func(store.Token) bool) error {
	existing, err := tokens(tx, same)
	if err != nil {
		return err
	}
	for _, o := range existing {
		if o.Prefix == t.Prefix {
			return fmt.Errorf("store: token prefix %s: %w", t.Prefix, store.ErrDuplicate)
		}
	}
	return putToken(tx, t)
}

// RevokeServerToken revokes the server's token whose secret starts with
// prefix.
func (s *Store) RevokeServerToken(serverID int64, prefix string) error {
	return s.updateCredentials(func(tx *bbolt.Tx) error {
		return revoke(tx, prefix, serverTokens(serverID), nil)
	})
}

// RevokeAccountToken revokes the account's token whose secret starts
// with prefix, as store.Revocable allows.
func (s *Store) RevokeAccountToken(accountID int64, prefix string, allow func(store.Token) error) error {
	return s.updateCredentials(func(tx *bbolt.Tx) error {
		return revoke(tx, prefix, accountTokens(accountID), allow)
	})
}

func revoke(tx *bbolt.Tx, prefix string, same func(store.Token) bool, allow func(store.Token) error) error {
	all, err := tokens(tx, same)
	if err != nil {
		return err
	}
	if _, err := store.Revocable(all, prefix, allow); err != nil {
		return err
	}
	return deleteTokens(tx, func(t store.Token) bool { return same(t) && t.Prefix == prefix })
}

// CreateAccountWithOwner adds an account with its first owner token, in
// one transaction.
func (s *Store) CreateAccountWithOwner(name string, owner store.NewToken, now time.Time) (store.Account, error) {
	var a store.Account
	err := s.update(func(tx *bbolt.Tx) error {
		var err error
		if a, err = createAccount(tx, name, now); err != nil {
			return err
		}
		owner.Kind, owner.AccountID, owner.ServerID, owner.Role, owner.CreatedAt = store.KindAccount, a.ID, 0, store.RoleOwner, now.UTC()
		return putToken(tx, owner)
	})
	return a, err
}

// Accounts returns every account, by ID.
func (s *Store) Accounts() ([]store.Account, error) {
	var out []store.Account
	err := s.view(func(tx *bbolt.Tx) error {
		out = out[:0]
		return tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
			var a store.Account
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}

// DeleteAccount removes an account and its tokens. It refuses the
// operator account (ErrOperator) and an account that still has servers
// or domains (ErrHasServers): those are deleted first, on purpose.
func (s *Store) DeleteAccount(id int64) error {
	return s.updateCredentials(func(tx *bbolt.Tx) error {
		accounts := tx.Bucket(bucketAccounts)
		if accounts.Get(itob(id)) == nil {
			return store.ErrNotFound
		}
		if op, err := operatorAccount(tx); err != nil {
			return err
		} else if op == id {
			return store.ErrOperator
		}
		owned := func(b *bbolt.Bucket) (bool, error) {
			found := false
			err := b.ForEach(func(_, v []byte) error {
				var x struct{ AccountID int64 }
				if err := json.Unmarshal(v, &x); err != nil {
					return err
				}
				found = found || x.AccountID == id
				return nil
			})
			return found, err
		}
		for _, name := range [][]byte{bucketServers, bucketDomains} {
			if has, err := owned(tx.Bucket(name)); err != nil {
				return err
			} else if has {
				return store.ErrHasServers
			}
		}
		if err := accounts.Delete(itob(id)); err != nil {
			return err
		}
		if err := deleteMemberships(tx, id); err != nil {
			return err
		}
		if err := deleteAccountSessions(tx, id); err != nil {
			return err
		}
		return deleteTokens(tx, accountTokens(id))
	})
}
