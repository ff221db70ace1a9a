package store

import (
	"context"
	"io"
	"time"
)

// The role interfaces below are what a storage backend implements; a
// consumer names only the roles it uses. Every method is safe for
// concurrent use, every write is one transaction that is durable when the
// method returns, and every rule (what a bounce suppresses, a message's
// status, a Sandbox server's events) is decided in this package, above
// the backend, which persists what it is handed. store/storetest holds
// the contract, which every backend passes.

// Accounts keeps accounts, the installation's first setup, and each
// account's log.
type Accounts interface {
	// Initialize creates the operator account, the first server and
	// their tokens, once; a second call fails with ErrInitialized.
	Initialize(p InitParams, now time.Time) (Account, Server, error)
	Initialized() (bool, error)
	CreateAccount(name string, now time.Time) (Account, error)
	// CreateAccountWithOwner creates an account and its owner's token in
	// one transaction.
	CreateAccountWithOwner(name string, owner NewToken, now time.Time) (Account, error)
	Account(id int64) (Account, error)
	Accounts() ([]Account, error)
	// DeleteAccount refuses the operator's account (ErrOperator) and an
	// account that still has servers (ErrHasServers).
	DeleteAccount(id int64) error
	OperatorAccount() (int64, error)
	AccountEvents(accountID int64) ([]AccountEvent, error)
	// UpdateAccount replaces an account's name and settings
	// (ErrNotFound).
	UpdateAccount(a Account) error
}

// Servers keeps an account's servers.
type Servers interface {
	// CreateServer creates a server with its first token, within the
	// account's cap (a *CapError); names are unique within an account
	// (ErrDuplicateName).
	CreateServer(srv Server, token NewToken, now time.Time) (Server, error)
	UpdateServer(srv Server) error
	Server(id int64) (Server, error)
	// ListServers returns the account's servers in name order.
	ListServers(accountID int64) ([]Server, error)
	// DeleteServer deletes a server of the account with its tokens, mail
	// and queue.
	DeleteServer(accountID, serverID int64) (Server, error)
}

// Tokens keeps server and account tokens, by the hash of their secret.
type Tokens interface {
	LookupToken(hash []byte) (Token, error)
	AddToken(t NewToken) error
	ServerTokens(serverID int64) ([]Token, error)
	AccountTokens(accountID int64) ([]Token, error)
	AddServerToken(serverID int64, t NewToken, now time.Time) (Token, error)
	AddAccountToken(accountID int64, role Role, t NewToken, now time.Time) (Token, error)
	RevokeServerToken(serverID int64, prefix string) error
	// RevokeAccountToken revokes the account token whose secret starts
	// with prefix, if allow, run in the transaction, agrees.
	RevokeAccountToken(accountID int64, prefix string, allow func(Token) error) error
	// CredentialsGeneration changes after every committed change that can
	// take away what a token grants (a revocation, a server's edit or
	// deletion), on this node or, for a shared backend, any node; open
	// SMTP sessions read their token again only when it has moved.
	CredentialsGeneration() uint64
}

// Domains keeps sending domains, their DKIM keys and their claims.
type Domains interface {
	CreateDomain(d Domain, now time.Time) (Domain, error)
	Domain(id int64) (Domain, error)
	// DomainByName returns the domain named name, whichever account
	// holds it.
	DomainByName(name string) (Domain, error)
	Domains(accountID int64) ([]Domain, error)
	// VerifiedDomains returns every domain with a verified record, for
	// the daily check of them.
	VerifiedDomains() ([]Domain, error)
	UpdateDomain(d Domain) error
	// ModifyDomain runs fn on the domain in one transaction and stores
	// what fn leaves, unless fn fails.
	ModifyDomain(id int64, fn func(*Domain) error) (Domain, error)
	// Reverified records the daily check of a verified domain.
	Reverified(id int64, found bool, now time.Time, failFor time.Duration) (Domain, error)
	// TakeDomain moves a domain to the account that claimed it and
	// proved it in DNS (ErrDomainProven while its holder's proof stands).
	TakeDomain(id int64, now time.Time) (Domain, error)
	DeleteDomain(id int64) error
	// QueuedSignatureBy reports whether a queued message carries a
	// signature of the domain by one of the selectors (such a key must
	// not be deleted yet).
	QueuedSignatureBy(domain string, selectors []string) (bool, error)
}

// Messages keeps accepted messages, their raw MIME and their events.
type Messages interface {
	// Enqueue stores an accepted message as Accept decided to keep it,
	// in one transaction, and returns once that is durable; on error
	// nothing of it was written. A server that no longer exists fails
	// with ErrServerMissing, a MessageID already used with ErrDuplicate.
	Enqueue(sub Submission) error
	Message(serverID int64, messageID string) (Message, error)
	RawMessage(serverID int64, messageID string) ([]byte, error)
	// Messages returns a server's newest messages, newest first.
	Messages(serverID int64, limit int) ([]Message, error)
	SearchMessages(serverID int64, q MessageQuery) (SearchResult, error)
	// Events returns a message's events in the order they happened.
	Events(serverID int64, messageID string) ([]Event, error)
}

// Bounces keeps each server's bounces and the recipients they made
// inactive.
type Bounces interface {
	Bounce(serverID, id int64) (Bounce, error)
	Bounces(serverID int64, q BounceQuery) (BounceResult, error)
	// RecordLateBounce files a bounce or complaint about a recipient of a
	// message that arrived after the attempt (store.ResolveLateBounce),
	// in one transaction with its webhook calls, and returns the Bounce.
	// ErrNotFound: no such message.
	RecordLateBounce(serverID int64, messageID string, o Outcome, at time.Time) (Bounce, error)
	// ActivateBounce lifts the suppression a bounce made.
	ActivateBounce(serverID, id int64) (Bounce, error)
	Suppressed(serverID int64, email string) (Suppression, bool, error)
	Unsuppress(serverID int64, email string) error
}

// Queue is the delivery queue: entries are claimed with a lease, and an
// attempt's outcome is recorded, deferred or released.
type Queue interface {
	// Claim leases due entries, rotating across servers.
	Claim(req ClaimRequest) ([]QueueEntry, error)
	// RecordAttempt stores what an attempt did, in one transaction.
	RecordAttempt(a Attempt) error
	// Defer hands back a claimed entry that could not start, counting
	// no attempt.
	Defer(e QueueEntry, due time.Time) error
	// ReleaseLeases hands back every lease (at startup of the only node).
	ReleaseLeases(now time.Time) (int, error)
	// NextDue is when the earliest entry falls due.
	NextDue() (time.Time, bool, error)
	// Queue lists up to limit entries, earliest due first.
	Queue(limit int) ([]QueueEntry, error)
	QueueStats() ([]QueueStat, error)
}

// Stats counts what each server sent and bounced.
type Stats interface {
	Stats(serverID int64, q StatsQuery) ([]DayStats, error)
	// SentSince counts, up to limit, the messages received since.
	SentSince(serverID int64, since time.Time, limit int) (int, error)
	SentOn(serverID int64, day time.Time) (int64, error)
	// DeliveryStats counts inactive recipients and bounces by type.
	DeliveryStats(serverID int64) (inactive int, byType map[string]int, err error)
}

// Retention deletes what has outlived its server's retention.
type Retention interface {
	// PurgeExpired deletes, in transactions of up to batch messages, the
	// messages older than their server's retention, and stops between
	// two when ctx is done.
	PurgeExpired(ctx context.Context, now time.Time, batch int) (int, error)
}

// Maintenance is what operating a backend needs of it.
type Maintenance interface {
	// Ping checks that the backend answers.
	Ping() error
	Close() error
}

// Backend is a whole storage backend.
type Backend interface {
	Accounts
	Servers
	Tokens
	Domains
	Messages
	Bounces
	Queue
	Stats
	Retention
	STSPolicies
	TLSReports
	Webhooks
	Streams
	DMARCReports
	Users
	Sessions
	Transfers
	Marks
	Maintenance
}

// Backuper is a backend that writes a consistent online copy of itself.
type Backuper interface {
	Backup(w io.Writer) (int64, error)
}

// QueueWatcher is a backend that several nodes share: WatchQueue calls
// wake whenever any node queues mail or hands leases back, until ctx is
// done, so that idle relays everywhere start at once.
type QueueWatcher interface {
	WatchQueue(ctx context.Context, wake func()) error
}

// Exclusive is a backend that several nodes share: RunExclusive runs fn,
// the job named name, unless another node runs it at the same moment, and
// reports whether it ran it. Once-per-installation jobs (retention, the
// daily re-verification of domains) go through it.
type Exclusive interface {
	RunExclusive(ctx context.Context, name string, fn func()) (bool, error)
}

// LoginFailures is a backend that several nodes share, which counts failed
// logins per client address across them, so that a guesser gains nothing
// by spreading tries over nodes.
type LoginFailures interface {
	// LoginFailed records a failed login from addr at now and returns how
	// many addr made since now less window, this one included.
	LoginFailed(addr string, now time.Time, window time.Duration) (int, error)
	// ShutOut refuses addr's logins until until, on every node; now is
	// the caller's clock, against which ended shut-outs are forgotten.
	ShutOut(addr string, now, until time.Time) error
	// ShutOutUntil returns when addr's shut-out ends, zero when it is not
	// shut out at now.
	ShutOutUntil(addr string, now time.Time) (time.Time, error)
}

// Located is a backend that can say where it keeps its data (which
// database, say), without any secret, for operators.
type Located interface {
	Location() string
}

// Checker is a backend that verifies its own structure.
type Checker interface {
	Check() error
}
