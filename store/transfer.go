package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/internal/domainname"
	"github.com/postern/postern/internal/message"
)

// Transfer asks to move a server from one account to another.
type Transfer struct {
	ServerID    int64
	FromAccount int64 // the account holding it now (ErrNotFound otherwise)
	ToAccount   int64
	// CopyDomains copies the sending domains the server used, with their
	// DKIM keys, into ToAccount where it lacks them (see PlanTransfer for
	// what a copy is, a name being held by one account only).
	CopyDomains bool
}

// TransferResult is what a transfer did.
type TransferResult struct {
	Server Server // as it is now, in ToAccount
	// CopiedDomains were copied into ToAccount (CopyDomains);
	// MissingDomains are those the server sent as that ToAccount lacks
	// after the transfer (all of them without CopyDomains; with it,
	// those FromAccount did not hold, which it could not give).
	CopiedDomains  []string
	MissingDomains []string
	// RemovedGrants counts the grants to the server that FromAccount's
	// Members had, removed: the server is no longer FromAccount's, and
	// no grant is made in ToAccount, whose Owners and Admins give them.
	RemovedGrants int
}

// Transfers moves servers between accounts.
type Transfers interface {
	// TransferServer moves a server with everything it has (messages,
	// raw MIME, events, bounces, suppressions, daily stats, limits,
	// settings, tokens, queued mail) to another account, keeping its ID,
	// in one transaction, as PlanTransfer decides: ErrNotFound when the
	// server is not FromAccount's or ToAccount does not exist,
	// ErrSameAccount, ErrDuplicateName, a *CapError.
	TransferServer(t Transfer, now time.Time) (TransferResult, error)
}

// ErrSameAccount refuses to transfer a server to the account that holds
// it.
var ErrSameAccount = errors.New("store: the server is in that account already")

// Types of AccountEvent of a transfer.
const (
	// AccountEventServerTransferredOut: a server of the account was moved
	// to another account.
	AccountEventServerTransferredOut = "ServerTransferredOut"
	// AccountEventServerTransferredIn: a server of another account was
	// moved into the account.
	AccountEventServerTransferredIn = "ServerTransferredIn"
)

// TransferState is what a backend reads, in its transaction, for
// PlanTransfer.
type TransferState struct {
	Server Server // the server as stored (a missing one is ErrNotFound before)
	// ToExists: the target account exists.
	ToExists bool
	// TargetServers and TargetDomains are ToAccount's servers and domain
	// records (claims included).
	TargetServers []Server
	TargetDomains []Domain
	// SentDomains are the server's sending domains: SenderDomains of its
	// messages' From fields.
	SentDomains []string
	// Holders are the records holding those of SentDomains that some
	// account holds, by name.
	Holders map[string]Domain
	// SourceMembers are FromAccount's memberships.
	SourceMembers []Membership
	Caps          Caps
}

// DomainCopy is one domain PlanTransfer copies into the target account.
type DomainCopy struct {
	// Source is FromAccount's record of the name, which becomes a claim
	// on it, to be stored as it is.
	Source Domain
	// New is ToAccount's new record, the name's holder, to be created
	// (its ID is the backend's to assign).
	New Domain
	// DropClaim is the ID of ToAccount's own claim on the name, replaced
	// by New and to be deleted; 0 when it had none.
	DropClaim int64
}

// TransferPlan is what a backend persists of a transfer.
type TransferPlan struct {
	Server  Server // the server as it is to be stored, in ToAccount
	Copies  []DomainCopy
	Members []Membership // FromAccount's memberships whose grants changed
	Events  []AccountEventRecord
	Result  TransferResult // but Server, the backend's to fill
}

// SenderDomains returns the domains, lower case and sorted, of the From
// fields given (Message.From, as kept), each once.
func SenderDomains(froms []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, from := range froms {
		for _, a := range message.ParseAddressList(from) {
			addr := strings.Trim(strings.TrimSpace(a.Email), "<>")
			at := strings.LastIndexByte(addr, '@')
			if at < 0 {
				continue
			}
			d := domainname.Normalize(addr[at+1:])
			if d != "" && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
			break // the first address, as the relay signs it
		}
	}
	slices.Sort(out)
	return out
}

// PlanTransfer decides a transfer from what a backend read in its
// transaction (st), or refuses it: ErrNotFound when the server is not
// t.FromAccount's or t.ToAccount does not exist, ErrSameAccount,
// ErrDuplicateName when ToAccount has a server of its name (in any
// case), a *CapError past ToAccount's caps of servers or domains.
//
// What moves: the server's record, with AccountID set to ToAccount, and
// its tokens' AccountID. Everything else of the server (messages, raw
// MIME, events, bounces, suppressions, stats, streams, webhooks, queue
// entries) is kept by server ID, and stays as it is, so the tokens
// authenticate as before and the queued mail goes on.
//
// Domains. A domain name is held by one account in the installation
// (DomainByName); another account may only claim it, and a claim signs
// nothing. The relay signs a server's mail with the From domain's holder
// only when the holder is the server's account, and the sender policy
// refuses another account's domain. So for each domain the server sent
// as that ToAccount does not hold:
//   - with CopyDomains and the name held by FromAccount, ToAccount gets
//     a record of its own, a copy of FromAccount's with the same DKIM
//     keys (active, pending and revoked), verification and Return-Path,
//     which becomes the name's holder, so the server's mail is signed
//     with the keys already published in DNS; FromAccount's record
//     stays, with its keys and DMARC reports, as a claim on the name
//     (unverified), so that FromAccount can take the name back by the
//     usual proof once ToAccount no longer holds it. FromAccount's other
//     servers no longer sign as that domain; the account's log says so.
//     A claim ToAccount had on the name is replaced by the copy.
//   - otherwise (without CopyDomains, or the name held by a third
//     account or nobody) nothing changes and the name is in
//     MissingDomains.
//
// Grants. Every grant to the server in FromAccount's memberships is
// removed and counted; none is made in ToAccount.
//
// Each account's log gets an event of the transfer.
func PlanTransfer(t Transfer, st TransferState, now time.Time) (TransferPlan, error) {
	var p TransferPlan
	srv := st.Server
	switch {
	case srv.ID != t.ServerID || srv.AccountID != t.FromAccount:
		return p, fmt.Errorf("store: server %d of account %d: %w", t.ServerID, t.FromAccount, ErrNotFound)
	case t.ToAccount == t.FromAccount:
		return p, ErrSameAccount
	case !st.ToExists:
		return p, fmt.Errorf("store: account %d: %w", t.ToAccount, ErrNotFound)
	}
	srv.AccountID = t.ToAccount
	for _, other := range st.TargetServers {
		if SameServerName(other, srv) {
			return p, fmt.Errorf("store: server name %q: %w", srv.Name, ErrDuplicateName)
		}
	}
	if limit := st.Caps.ServersPerAccount; limit > 0 && len(st.TargetServers) >= limit {
		return p, &CapError{Setting: "max-servers-per-account", What: "servers per account", Limit: limit}
	}
	p.Server = srv

	targetClaims := map[string]int64{}
	for _, d := range st.TargetDomains {
		if d.Claim {
			targetClaims[d.Name] = d.ID
		}
	}
	added := 0
	for _, name := range st.SentDomains {
		h, held := st.Holders[name]
		switch {
		case held && h.AccountID == t.ToAccount:
			continue
		case t.CopyDomains && held && h.AccountID == t.FromAccount:
			c := DomainCopy{New: h, Source: h, DropClaim: targetClaims[name]}
			c.New.ID, c.New.AccountID, c.New.CreatedAt = 0, t.ToAccount, now.UTC()
			c.New.Keys = slices.Clone(h.Keys)
			c.New.PendingKeys = slices.Clone(h.PendingKeys)
			c.New.RevokedKeys = slices.Clone(h.RevokedKeys)
			c.Source.Claim, c.Source.DKIMVerified, c.Source.FailingSince, c.Source.ReturnPathVerified = true, false, time.Time{}, false
			if c.DropClaim == 0 {
				added++
			}
			p.Copies = append(p.Copies, c)
			p.Result.CopiedDomains = append(p.Result.CopiedDomains, name)
		default:
			p.Result.MissingDomains = append(p.Result.MissingDomains, name)
		}
	}
	if limit := st.Caps.DomainsPerAccount; limit > 0 && added > 0 && len(st.TargetDomains)+added > limit {
		return p, &CapError{Setting: "max-domains-per-account", What: "domains per account", Limit: limit}
	}

	for _, m := range st.SourceMembers {
		kept := make([]ServerGrant, 0, len(m.Servers))
		for _, g := range m.Servers {
			if g.ServerID != srv.ID {
				kept = append(kept, g)
			}
		}
		if removed := len(m.Servers) - len(kept); removed > 0 {
			p.Result.RemovedGrants += removed
			if len(kept) == 0 {
				kept = nil
			}
			m.Servers = kept
			p.Members = append(p.Members, m)
		}
	}

	at := now.UTC()
	out := fmt.Sprintf("The server %s (ID %d) was moved to account %d with its messages, tokens and settings.", srv.Name, srv.ID, t.ToAccount)
	if len(p.Result.CopiedDomains) > 0 {
		out += fmt.Sprintf(" The domains %s went with it: account %d now holds them with the same DKIM keys, and this account keeps a claim on each; this account's other servers no longer sign as them.", strings.Join(p.Result.CopiedDomains, ", "), t.ToAccount)
	}
	if p.Result.RemovedGrants > 0 {
		out += fmt.Sprintf(" %d grants of Members to it were removed.", p.Result.RemovedGrants)
	}
	in := fmt.Sprintf("The server %s (ID %d) was moved here from account %d with its messages, tokens and settings.", srv.Name, srv.ID, t.FromAccount)
	if len(p.Result.CopiedDomains) > 0 {
		in += fmt.Sprintf(" The domains %s were copied here with their DKIM keys.", strings.Join(p.Result.CopiedDomains, ", "))
	}
	if len(p.Result.MissingDomains) > 0 {
		in += fmt.Sprintf(" It sent as %s, which this account does not hold: add them, or its mail from them is refused or goes unsigned.", strings.Join(p.Result.MissingDomains, ", "))
	}
	p.Events = []AccountEventRecord{
		{AccountID: t.FromAccount, Event: AccountEvent{At: at, Type: AccountEventServerTransferredOut, Message: out}},
		{AccountID: t.ToAccount, Event: AccountEvent{At: at, Type: AccountEventServerTransferredIn, Message: in}},
	}
	return p, nil
}
