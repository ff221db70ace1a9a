package bolt

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/postern/postern/store"
	bbolt "go.etcd.io/bbolt"
)

// TransferServer moves a server to another account, as
// store.PlanTransfer decides, in one transaction. A server's mail, queue,
// bounces, suppressions, stats, streams and webhooks are all kept by its
// ID, so what changes is its record, its tokens' AccountID, the copied
// domains, FromAccount's grants and both accounts' logs.
func (s *Store) TransferServer(t store.Transfer, now time.Time) (store.TransferResult, error) {
	var res store.TransferResult
	err := s.updateCredentials(func(tx *bbolt.Tx) error {
		servers := tx.Bucket(bucketServers)
		var st store.TransferState
		if err := getJSON(servers, itob(t.ServerID), &st.Server); err != nil {
			return err
		}
		st.ToExists = tx.Bucket(bucketAccounts).Get(itob(t.ToAccount)) != nil
		st.Caps = s.opts.Caps
		if err := servers.ForEach(func(_, v []byte) error {
			var srv store.Server
			if err := json.Unmarshal(v, &srv); err != nil {
				return err
			}
			if srv.AccountID == t.ToAccount {
				st.TargetServers = append(st.TargetServers, srv)
			}
			return nil
		}); err != nil {
			return err
		}
		domains := tx.Bucket(bucketDomains)
		if err := domains.ForEach(func(_, v []byte) error {
			var d store.Domain
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if d.AccountID == t.ToAccount {
				st.TargetDomains = append(st.TargetDomains, d)
			}
			return nil
		}); err != nil {
			return err
		}
		var froms []string
		if mail := tx.Bucket(bucketMail).Bucket(itob(t.ServerID)); mail != nil {
			if err := mail.Bucket(bucketMessages).ForEach(func(_, v []byte) error {
				var m struct{ From string }
				if err := json.Unmarshal(v, &m); err != nil {
					return err
				}
				froms = append(froms, m.From)
				return nil
			}); err != nil {
				return err
			}
		}
		st.SentDomains = store.SenderDomains(froms)
		st.Holders = map[string]store.Domain{}
		names := tx.Bucket(bucketDomainNames)
		for _, name := range st.SentDomains {
			if id := names.Get([]byte(name)); id != nil {
				var d store.Domain
				if err := getJSON(domains, id, &d); err != nil {
					return err
				}
				st.Holders[name] = d
			}
		}
		var err error
		if st.SourceMembers, err = accountMembers(tx, t.FromAccount); err != nil {
			return err
		}

		p, err := store.PlanTransfer(t, st, now)
		if err != nil {
			return err
		}

		if err := putJSON(servers, itob(p.Server.ID), p.Server); err != nil {
			return err
		}
		toks := tx.Bucket(bucketTokens)
		var moved [][]byte
		var records []store.Token
		if err := toks.ForEach(func(k, v []byte) error {
			var tok store.Token
			if err := json.Unmarshal(v, &tok); err != nil {
				return err
			}
			if tok.Kind == store.KindServer && tok.ServerID == p.Server.ID {
				tok.AccountID = p.Server.AccountID
				moved, records = append(moved, slices.Clone(k)), append(records, tok)
			}
			return nil
		}); err != nil {
			return err
		}
		for i, k := range moved {
			if err := putJSON(toks, k, records[i]); err != nil {
				return err
			}
		}
		claims := tx.Bucket(bucketDomainClaims)
		for _, c := range p.Copies {
			if c.DropClaim != 0 {
				if err := claims.Delete(claimKey(c.Source.Name, c.DropClaim)); err != nil {
					return err
				}
				if err := domains.Delete(itob(c.DropClaim)); err != nil {
					return err
				}
			}
			if err := putJSON(domains, itob(c.Source.ID), c.Source); err != nil {
				return err
			}
			if err := claims.Put(claimKey(c.Source.Name, c.Source.ID), nil); err != nil {
				return err
			}
			seq, err := domains.NextSequence()
			if err != nil {
				return err
			}
			c.New.ID = int64(seq)
			if err := putJSON(domains, itob(c.New.ID), c.New); err != nil {
				return err
			}
			if err := names.Put([]byte(c.New.Name), itob(c.New.ID)); err != nil {
				return err
			}
		}
		for _, m := range p.Members {
			if err := putJSON(tx.Bucket(bucketMemberships), pairKey(m.AccountID, m.UserID), m); err != nil {
				return err
			}
		}
		for _, e := range p.Events {
			if err := addAccountEvent(tx, e.AccountID, e.Event); err != nil {
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
