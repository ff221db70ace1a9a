package store

import "time"

// Transfer asks to move a server from one account to another.
type Transfer struct {
	ServerID    int64
	FromAccount int64 // the account holding it now (ErrNotFound otherwise)
	ToAccount   int64
	// CopyDomains copies the sending domains the server used, with their
	// DKIM keys, into ToAccount where it lacks them.
	CopyDomains bool
}

// TransferResult is what a transfer did.
type TransferResult struct {
	Server Server // as it is now, in ToAccount
	// CopiedDomains were copied into ToAccount (CopyDomains);
	// MissingDomains are those ToAccount lacks (without CopyDomains).
	CopiedDomains  []string
	MissingDomains []string
	// RemovedGrants counts the grants to the server of users who are
	// not members of ToAccount, removed.
	RemovedGrants int
}

// Transfers moves servers between accounts.
type Transfers interface {
	// TransferServer moves a server with everything it has (messages,
	// raw MIME, events, bounces, suppressions, daily stats, limits,
	// settings, tokens, queued mail) to another account, keeping its ID,
	// in one transaction.
	TransferServer(t Transfer, now time.Time) (TransferResult, error)
}
