package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// Initialize creates the operator account, the first server and their
// tokens, once.
func (s *Store) Initialize(p store.InitParams, now time.Time) (store.Account, store.Server, error) {
	var acct store.Account
	var srv store.Server
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		// The row's insert is the once: a second Initialize, on any
		// node, fails on its key.
		tag, err := tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('initialized', $1) ON CONFLICT DO NOTHING`, now.UTC().Format(time.RFC3339))
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrInitialized
		}
		if acct, err = createAccount(ctx, tx, p.AccountName, now); err != nil {
			return err
		}
		at := p.AccountToken
		at.Kind, at.AccountID, at.CreatedAt = store.KindAccount, acct.ID, now
		if err := putToken(ctx, tx, at); err != nil {
			return err
		}
		srv = p.Server
		srv.AccountID = acct.ID
		if srv, err = createServer(ctx, tx, srv, now); err != nil {
			return err
		}
		st := p.ServerToken
		st.Kind, st.AccountID, st.ServerID, st.CreatedAt = store.KindServer, acct.ID, srv.ID, now
		if err := putToken(ctx, tx, st); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('operator', $1)`, strconv.FormatInt(acct.ID, 10))
		return err
	})
	return acct, srv, err
}

// Initialized reports whether Initialize ran.
func (s *Store) Initialized() (bool, error) {
	var ok bool
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		ok, err = exists(ctx, tx, `SELECT 1 FROM meta WHERE key = 'initialized'`)
		return err
	})
	return ok, err
}

// OperatorAccount returns the ID of the account Initialize created.
func (s *Store) OperatorAccount() (int64, error) {
	var id int64
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		id, err = operatorAccount(ctx, tx)
		return err
	})
	return id, err
}

func operatorAccount(ctx context.Context, tx pgx.Tx) (int64, error) {
	var v string
	err := tx.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'operator'`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func createAccount(ctx context.Context, tx pgx.Tx, name string, now time.Time) (store.Account, error) {
	a := store.Account{Name: name, CreatedAt: now.UTC()}
	if err := tx.QueryRow(ctx, `INSERT INTO accounts (doc) VALUES ('{}') RETURNING id`).Scan(&a.ID); err != nil {
		return a, err
	}
	doc, err := marshal(a)
	if err != nil {
		return a, err
	}
	_, err = tx.Exec(ctx, `UPDATE accounts SET doc = $2 WHERE id = $1`, a.ID, doc)
	return a, err
}

// CreateAccount creates an account.
func (s *Store) CreateAccount(name string, now time.Time) (store.Account, error) {
	var a store.Account
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		a, err = createAccount(ctx, tx, name, now)
		return err
	})
	return a, err
}

// CreateAccountWithOwner creates an account and its owner's token.
func (s *Store) CreateAccountWithOwner(name string, owner store.NewToken, now time.Time) (store.Account, error) {
	var a store.Account
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if a, err = createAccount(ctx, tx, name, now); err != nil {
			return err
		}
		owner.Kind, owner.AccountID, owner.ServerID, owner.Role, owner.CreatedAt = store.KindAccount, a.ID, 0, store.RoleOwner, now.UTC()
		return putToken(ctx, tx, owner)
	})
	return a, err
}

// Account returns an account.
func (s *Store) Account(id int64) (store.Account, error) {
	var a store.Account
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		return getDoc(ctx, tx, &a, `SELECT doc FROM accounts WHERE id = $1`, id)
	})
	return a, err
}

// UpdateAccount replaces an account's name and settings; its ID and
// creation time stay.
func (s *Store) UpdateAccount(a store.Account) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		var old store.Account
		if err := getDoc(ctx, tx, &old, `SELECT doc FROM accounts WHERE id = $1 FOR UPDATE`, a.ID); err != nil {
			return err
		}
		a.CreatedAt = old.CreatedAt
		doc, err := marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE accounts SET doc = $2 WHERE id = $1`, a.ID, doc)
		return err
	})
}

// Accounts returns every account, in the order of their IDs.
func (s *Store) Accounts() ([]store.Account, error) {
	return viewDocs[store.Account](s, `SELECT doc FROM accounts ORDER BY id`)
}

// DeleteAccount deletes an account and its tokens; not the operator's,
// nor one with servers or domains.
func (s *Store) DeleteAccount(id int64) error {
	return s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		if ok, err := exists(ctx, tx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		} else if !ok {
			return store.ErrNotFound
		}
		if op, err := operatorAccount(ctx, tx); err != nil {
			return err
		} else if op == id {
			return store.ErrOperator
		}
		has, err := exists(ctx, tx, `SELECT 1 FROM servers WHERE account_id = $1 UNION ALL SELECT 1 FROM domains WHERE account_id = $1`, id)
		if err != nil {
			return err
		}
		if has {
			return store.ErrHasServers
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tokens WHERE kind = $1 AND account_id = $2`, store.KindAccount, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
		return err
	})
}

// lockAccount locks an account's row until the transaction ends, so that
// creations under one account's caps are serialised; a missing account
// is ErrNotFound.
func lockAccount(ctx context.Context, tx pgx.Tx, id int64) error {
	ok, err := exists(ctx, tx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("store: account %d: %w", id, store.ErrNotFound)
	}
	return nil
}

// capPerAccount refuses one more row of table for the account when it
// has limit already (0: no cap). The account's row is locked.
func capPerAccount(ctx context.Context, tx pgx.Tx, table string, accountID int64, limit int, setting, what string) error {
	if limit <= 0 {
		return nil
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE account_id = $1`, accountID).Scan(&n); err != nil {
		return err
	}
	if n >= limit {
		return &store.CapError{Setting: setting, What: what, Limit: limit}
	}
	return nil
}

func createServer(ctx context.Context, tx pgx.Tx, srv store.Server, now time.Time) (store.Server, error) {
	srv = store.NewServer(srv, now)
	if err := tx.QueryRow(ctx, `INSERT INTO servers (account_id, name_key, doc) VALUES ($1, $2, '{}') RETURNING id`,
		srv.AccountID, strings.ToLower(srv.Name)).Scan(&srv.ID); err != nil {
		if isUnique(err, "") {
			return srv, fmt.Errorf("store: server name %q: %w", srv.Name, store.ErrDuplicateName)
		}
		return srv, err
	}
	doc, err := marshal(srv)
	if err != nil {
		return srv, err
	}
	_, err = tx.Exec(ctx, `UPDATE servers SET doc = $2 WHERE id = $1`, srv.ID, doc)
	return srv, err
}

// CreateServer creates a server with its first token, within the
// account's cap.
func (s *Store) CreateServer(srv store.Server, token store.NewToken, now time.Time) (store.Server, error) {
	var out store.Server
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, srv.AccountID); err != nil {
			return err
		}
		if err := capPerAccount(ctx, tx, "servers", srv.AccountID, s.opts.Caps.ServersPerAccount, "max-servers-per-account", "servers per account"); err != nil {
			return err
		}
		var err error
		if out, err = createServer(ctx, tx, srv, now); err != nil {
			return err
		}
		token.Kind, token.AccountID, token.ServerID, token.CreatedAt = store.KindServer, out.AccountID, out.ID, now
		return putToken(ctx, tx, token)
	})
	return out, err
}

// UpdateServer stores an edit of a server.
func (s *Store) UpdateServer(srv store.Server) error {
	return s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		var prev store.Server
		if err := getDoc(ctx, tx, &prev, `SELECT doc FROM servers WHERE id = $1 FOR UPDATE`, srv.ID); err != nil {
			return err
		}
		srv = store.UpdatedServer(prev, srv)
		doc, err := marshal(srv)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE servers SET name_key = $2, doc = $3 WHERE id = $1`, srv.ID, strings.ToLower(srv.Name), doc)
		if isUnique(err, "") {
			return fmt.Errorf("store: server name %q: %w", srv.Name, store.ErrDuplicateName)
		}
		return err
	})
}

// Server returns a server.
func (s *Store) Server(id int64) (store.Server, error) {
	var srv store.Server
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &srv, `SELECT doc FROM servers WHERE id = $1`, id)
	})
	return srv, err
}

// ListServers returns the account's servers as listings show them.
func (s *Store) ListServers(accountID int64) ([]store.Server, error) {
	var out []store.Server
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = docs[store.Server](ctx, tx, `SELECT doc FROM servers WHERE account_id = $1`, accountID)
		return err
	})
	store.SortServers(out)
	return out, err
}

// DeleteServer deletes a server of the account with its tokens; its
// mail, queue, bounces and stats go with it (ON DELETE CASCADE).
func (s *Store) DeleteServer(accountID, serverID int64) (store.Server, error) {
	var srv store.Server
	err := s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		if err := getDoc(ctx, tx, &srv, `SELECT doc FROM servers WHERE id = $1 FOR UPDATE`, serverID); err != nil {
			return err
		}
		if srv.AccountID != accountID {
			return store.ErrNotFound
		}
		if _, err := tx.Exec(ctx, `DELETE FROM tokens WHERE kind = $1 AND server_id = $2`, store.KindServer, serverID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM servers WHERE id = $1`, serverID)
		return err
	})
	return srv, err
}

func putToken(ctx context.Context, tx pgx.Tx, t store.NewToken) error {
	if len(t.Hash) == 0 {
		return fmt.Errorf("store: token without hash")
	}
	doc, err := marshal(t.Token)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO tokens (hash, kind, account_id, server_id, prefix, doc) VALUES ($1, $2, $3, $4, $5, $6)`,
		t.Hash, t.Kind, t.AccountID, t.ServerID, t.Prefix, doc)
	if isUnique(err, "") {
		return fmt.Errorf("store: token: %w", store.ErrDuplicate)
	}
	return err
}

// LookupToken returns the token with the hash.
func (s *Store) LookupToken(hash []byte) (store.Token, error) {
	var t store.Token
	err := s.readOne(func(ctx context.Context, q querier) error {
		return getDoc(ctx, q, &t, `SELECT doc FROM tokens WHERE hash = $1`, hash)
	})
	return t, err
}

// AddToken stores a token for an existing server or account.
func (s *Store) AddToken(t store.NewToken) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		switch t.Kind {
		case store.KindServer:
			if ok, err := serverExists(ctx, tx, t.ServerID, true); err != nil {
				return err
			} else if !ok {
				return store.ErrServerMissing
			}
		case store.KindAccount:
			if err := lockAccount(ctx, tx, t.AccountID); err != nil {
				return err
			}
		default:
			return fmt.Errorf("store: token kind %q", t.Kind)
		}
		return putToken(ctx, tx, t)
	})
}

func tokens(ctx context.Context, tx pgx.Tx, where string, arg int64) ([]store.Token, error) {
	out, err := docs[store.Token](ctx, tx, `SELECT doc FROM tokens WHERE `+where, arg)
	store.SortTokens(out)
	return out, err
}

const (
	serverTokens  = `kind = 'server' AND server_id = $1`
	accountTokens = `kind = 'account' AND account_id = $1`
)

// ServerTokens returns a server's tokens, oldest first.
func (s *Store) ServerTokens(serverID int64) ([]store.Token, error) {
	var out []store.Token
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = tokens(ctx, tx, serverTokens, serverID)
		return err
	})
	return out, err
}

// AccountTokens returns an account's tokens, oldest first.
func (s *Store) AccountTokens(accountID int64) ([]store.Token, error) {
	var out []store.Token
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = tokens(ctx, tx, accountTokens, accountID)
		return err
	})
	return out, err
}

// AddServerToken adds a token to a server, within its cap; prefixes are
// unique within the server.
func (s *Store) AddServerToken(serverID int64, t store.NewToken, now time.Time) (store.Token, error) {
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		var srv store.Server
		if err := getDoc(ctx, tx, &srv, `SELECT doc FROM servers WHERE id = $1 FOR UPDATE`, serverID); err != nil {
			return store.ErrServerMissing
		}
		t.Kind, t.AccountID, t.ServerID, t.Role, t.CreatedAt = store.KindServer, srv.AccountID, srv.ID, "", now.UTC()
		existing, err := tokens(ctx, tx, serverTokens, serverID)
		if err != nil {
			return err
		}
		if limit := s.opts.Caps.TokensPerServer; limit > 0 && len(existing) >= limit {
			return &store.CapError{Setting: "max-tokens-per-server", What: "tokens per server", Limit: limit}
		}
		return putUniqueToken(ctx, tx, t, existing)
	})
	return t.Token, err
}

// AddAccountToken adds an owner or admin token to an account; prefixes
// are unique within the account.
func (s *Store) AddAccountToken(accountID int64, role store.Role, t store.NewToken, now time.Time) (store.Token, error) {
	if role != store.RoleOwner && role != store.RoleAdmin {
		return store.Token{}, fmt.Errorf("store: token role %q", role)
	}
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, accountID); err != nil {
			return err
		}
		t.Kind, t.AccountID, t.ServerID, t.Role, t.CreatedAt = store.KindAccount, accountID, 0, role, now.UTC()
		existing, err := tokens(ctx, tx, accountTokens, accountID)
		if err != nil {
			return err
		}
		return putUniqueToken(ctx, tx, t, existing)
	})
	return t.Token, err
}

func putUniqueToken(ctx context.Context, tx pgx.Tx, t store.NewToken, existing []store.Token) error {
	for _, o := range existing {
		if o.Prefix == t.Prefix {
			return fmt.Errorf("store: token prefix %s: %w", t.Prefix, store.ErrDuplicate)
		}
	}
	return putToken(ctx, tx, t)
}

// RevokeServerToken revokes the server's token whose secret starts with
// prefix.
func (s *Store) RevokeServerToken(serverID int64, prefix string) error {
	return s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM servers WHERE id = $1 FOR UPDATE`, serverID); err != nil {
			return err
		}
		return revoke(ctx, tx, serverTokens, serverID, prefix, nil)
	})
}

// RevokeAccountToken revokes the account's token whose secret starts
// with prefix, as store.Revocable allows.
func (s *Store) RevokeAccountToken(accountID int64, prefix string, allow func(store.Token) error) error {
	return s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		// Locked, so that two revocations of the last two owners cannot
		// both see the other still there.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, accountID); err != nil {
			return err
		}
		return revoke(ctx, tx, accountTokens, accountID, prefix, allow)
	})
}

func revoke(ctx context.Context, tx pgx.Tx, where string, id int64, prefix string, allow func(store.Token) error) error {
	all, err := tokens(ctx, tx, where, id)
	if err != nil {
		return err
	}
	if _, err := store.Revocable(all, prefix, allow); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM tokens WHERE `+where+` AND prefix = $2`, id, prefix)
	return err
}

func addAccountEvent(ctx context.Context, tx pgx.Tx, accountID int64, e store.AccountEvent) error {
	doc, err := marshal(e)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO account_events (account_id, doc) VALUES ($1, $2)`, accountID, doc)
	return err
}

// AccountEvents returns an account's log, oldest first.
func (s *Store) AccountEvents(accountID int64) ([]store.AccountEvent, error) {
	return viewDocs[store.AccountEvent](s, `SELECT doc FROM account_events WHERE account_id = $1 ORDER BY seq`, accountID)
}
