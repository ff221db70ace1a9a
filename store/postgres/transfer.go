package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// TransferServer moves a server to another account, as
// store.PlanTransfer decides, in one transaction. Its mail, queue,
// bounces, suppressions, stats, streams and webhooks are rows keyed by
// its ID and stay as they are; what changes is its row, its tokens'
// account, the copied domains, FromAccount's grants and both accounts'
// logs.
func (s *Store) TransferServer(t store.Transfer, now time.Time) (store.TransferResult, error) {
	var res store.TransferResult
	err := s.updateCredentials(func(ctx context.Context, tx pgx.Tx) error {
		var st store.TransferState
		if err := getDoc(ctx, tx, &st.Server, `SELECT doc FROM servers WHERE id = $1 FOR UPDATE`, t.ServerID); err != nil {
			return err
		}
		// Both accounts' rows, in ID order: creations under the target's
		// caps and changes of the source's members wait.
		ids := []int64{t.FromAccount, t.ToAccount}
		if ids[1] < ids[0] {
			ids[0], ids[1] = ids[1], ids[0]
		}
		found := map[int64]bool{}
		rows, err := tx.Query(ctx, `SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			found[id] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		st.ToExists = found[t.ToAccount]
		st.Caps = s.opts.Caps
		if st.TargetServers, err = docs[store.Server](ctx, tx, `SELECT doc FROM servers WHERE account_id = $1`, t.ToAccount); err != nil {
			return err
		}
		var froms []string
		rows, err = tx.Query(ctx, `SELECT DISTINCT coalesce(doc->>'From', '') FROM messages WHERE server_id = $1`, t.ServerID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var from string
			if err := rows.Scan(&from); err != nil {
				rows.Close()
				return err
			}
			froms = append(froms, from)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		st.SentDomains = store.SenderDomains(froms)
		st.Holders = map[string]store.Domain{}
		for _, name := range st.SentDomains { // sorted: locks in one order
			if err := lockName(ctx, tx, name); err != nil {
				return err
			}
			h, err := holder(ctx, tx, name)
			if err != nil {
				return err
			}
			if h != nil {
				st.Holders[name] = *h
			}
		}
		if st.TargetDomains, err = docs[store.Domain](ctx, tx, `SELECT doc FROM domains WHERE account_id = $1`, t.ToAccount); err != nil {
			return err
		}
		if st.SourceMembers, err = docs[store.Membership](ctx, tx, `SELECT doc FROM memberships WHERE account_id = $1 ORDER BY user_id`, t.FromAccount); err != nil {
			return err
		}

		p, err := store.PlanTransfer(t, st, now)
		if err != nil {
			return err
		}

		doc, err := marshal(p.Server)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE servers SET account_id = $2, name_key = $3, doc = $4 WHERE id = $1`,
			p.Server.ID, p.Server.AccountID, strings.ToLower(p.Server.Name), doc); err != nil {
			if isUnique(err, "") {
				return fmt.Errorf("store: server name %q: %w", p.Server.Name, store.ErrDuplicateName)
			}
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE tokens SET account_id = $2, doc = jsonb_set(doc, '{AccountID}', to_jsonb($2::bigint))
			WHERE kind = $3 AND server_id = $1`, p.Server.ID, p.Server.AccountID, store.KindServer); err != nil {
			return err
		}
		for _, c := range p.Copies {
			if c.DropClaim != 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM domains WHERE id = $1`, c.DropClaim); err != nil {
					return err
				}
			}
			// The source's record becomes a claim before the new holder
			// is inserted: one holder per name.
			if err := putDomain(ctx, tx, c.Source); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `INSERT INTO domains (account_id, name, claim, doc) VALUES ($1, $2, false, '{}') RETURNING id`,
				c.New.AccountID, c.New.Name).Scan(&c.New.ID); err != nil {
				return err
			}
			if err := putDomain(ctx, tx, c.New); err != nil {
				return err
			}
		}
		for _, m := range p.Members {
			doc, err := marshal(m)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE memberships SET doc = $3 WHERE account_id = $1 AND user_id = $2`, m.AccountID, m.UserID, doc); err != nil {
				return err
			}
		}
		for _, e := range p.Events {
			if err := addAccountEvent(ctx, tx, e.AccountID, e.Event); err != nil {
				return err
			}
		}
		res = p.Result
		res.Server = p.Server
		return nil
	})
	if err != nil {
		return store.TransferResult{}, err
	}
	return res, nil
}
