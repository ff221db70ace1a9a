package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Account owns servers and, later, sending domains.
type Account struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

// Delivery types of a server.
const (
	DeliveryLive    = "Live"
	DeliverySandbox = "Sandbox"
)

// Values of Server.TrackLinks, as Postmark names them.
const (
	TrackLinksNone        = "None"
	TrackLinksHtmlAndText = "HtmlAndText"
	TrackLinksHtmlOnly    = "HtmlOnly"
	TrackLinksTextOnly    = "TextOnly"
)

// Server is one Postmark-style server: a client's or an environment's own
// stream of mail, with its own token, messages and settings. The fields
// carry Postmark's names so that the API can show them as they are.
type Server struct {
	ID               int64
	AccountID        int64
	Name             string
	Color            string
	DeliveryType     string // set at creation only
	SmtpApiActivated bool
	RawEmailEnabled  bool

	// Inbound processing (kept for Postmark's clients; Postern does not
	// receive inbound mail yet). InboundHash is set at creation.
	InboundHash          string
	InboundDomain        string
	InboundSpamThreshold int

	InboundHookUrl  string
	BounceHookUrl   string
	OpenHookUrl     string
	DeliveryHookUrl string
	ClickHookUrl    string

	PostFirstOpenOnly          bool
	TrackOpens                 bool
	TrackLinks                 string
	IncludeBounceContentInHook bool
	EnableSmtpApiErrorHooks    bool

	// Pinned servers come first in listings (Postern's own).
	Pinned bool

	// Limits (Postern's own; see limits.go). Zero means no limit.
	// RateLimitPerMinute caps the messages accepted in any 60 seconds,
	// DailyQuota those accepted in a UTC day.
	RateLimitPerMinute int `json:",omitempty"`
	DailyQuota         int `json:",omitempty"`
	// RetentionDays is how long the server's messages are kept (see
	// retention.go); zero, as in servers stored before it existed, means
	// DefaultRetentionDays. Read it with Retention.
	RetentionDays int `json:",omitempty"`

	CreatedAt time.Time
}

// Token roles and kinds.
type (
	// TokenKind says what a token opens: a whole account or one server.
	TokenKind string
	// Role is an account token's role.
	Role string
)

const (
	KindAccount TokenKind = "account"
	KindServer  TokenKind = "server"

	RoleOwner Role = "owner"
	RoleAdmin Role = "admin"
)

// Token is what the store keeps of a token: never the token itself, only
// its hash (the key) and what it grants.
type Token struct {
	Prefix    string // first characters, to tell tokens apart in listings
	Kind      TokenKind
	AccountID int64
	ServerID  int64 // for KindServer
	Role      Role  // for KindAccount
	CreatedAt time.Time
}

// NewToken is a token to be stored: its hash and its record.
type NewToken struct {
	Hash []byte
	Token
}

// InitParams describe the installation that Initialize creates.
type InitParams struct {
	AccountName  string
	AccountToken NewToken
	Server       Server // ID and AccountID are assigned
	ServerToken  NewToken
}

// Initialize creates the first account (the installation's operator
// account, see OperatorAccount) with its owner token and a first server
// with its token, all in one transaction. It fails with
// ErrInitialized, changing nothing, if the store was initialised before.
func (s *Store) Initialize(p InitParams, now time.Time) (Account, Server, error) {
	var acct Account
	var srv Server
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta.Get(keyInitialized) != nil {
			return ErrInitialized
		}
		var err error
		acct, err = createAccount(tx, p.AccountName, now)
		if err != nil {
			return err
		}
		at := p.AccountToken
		at.Kind, at.AccountID, at.CreatedAt = KindAccount, acct.ID, now
		if err := putToken(tx, at); err != nil {
			return err
		}
		srv = p.Server
		srv.AccountID = acct.ID
		if srv, err = createServer(tx, srv, now); err != nil {
			return err
		}
		st := p.ServerToken
		st.Kind, st.AccountID, st.ServerID, st.CreatedAt = KindServer, acct.ID, srv.ID, now
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
	err := s.view(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketMeta).Get(keyInitialized) != nil
		return nil
	})
	return ok, err
}

// CreateAccount adds an account.
func (s *Store) CreateAccount(name string, now time.Time) (Account, error) {
	var a Account
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		a, err = createAccount(tx, name, now)
		return err
	})
	return a, err
}

// CreateServer adds a server to an existing account, with its first token.
func (s *Store) CreateServer(srv Server, token NewToken, now time.Time) (Server, error) {
	var out Server
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketAccounts).Get(itob(srv.AccountID)) == nil {
			return fmt.Errorf("store: account %d: %w", srv.AccountID, ErrNotFound)
		}
		if err := capPerAccount(tx.Bucket(bucketServers), srv.AccountID, s.opts.Caps.ServersPerAccount, "max-servers-per-account", "servers per account"); err != nil {
			return err
		}
		var err error
		if out, err = createServer(tx, srv, now); err != nil {
			return err
		}
		token.Kind, token.AccountID, token.ServerID, token.CreatedAt = KindServer, out.AccountID, out.ID, now
		return putToken(tx, token)
	})
	return out, err
}

// UpdateServer replaces a server's editable fields; its account,
// DeliveryType, InboundHash and creation time stay. A name another server
// of the account has (in any case) is refused with ErrDuplicate.
func (s *Store) UpdateServer(srv Server) error {
	return s.updateCredentials(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketServers)
		old := b.Get(itob(srv.ID))
		if old == nil {
			return ErrNotFound
		}
		var prev Server
		if err := json.Unmarshal(old, &prev); err != nil {
			return err
		}
		srv.AccountID, srv.CreatedAt = prev.AccountID, prev.CreatedAt
		srv.DeliveryType, srv.InboundHash = prev.DeliveryType, prev.InboundHash
		if err := uniqueServerName(b, srv); err != nil {
			return err
		}
		return putJSON(b, itob(srv.ID), srv)
	})
}

// uniqueServerName fails with ErrDuplicate if another server of srv's
// account has srv's name, in any case.
func uniqueServerName(b *bolt.Bucket, srv Server) error {
	return b.ForEach(func(_, v []byte) error {
		var other Server
		if err := json.Unmarshal(v, &other); err != nil {
			return err
		}
		if other.ID != srv.ID && other.AccountID == srv.AccountID && strings.EqualFold(other.Name, srv.Name) {
			return fmt.Errorf("store: server name %q: %w", srv.Name, ErrDuplicateName)
		}
		return nil
	})
}

// Server returns one server.
func (s *Store) Server(id int64) (Server, error) {
	var srv Server
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		srv, err = s.serverIn(tx, id)
		return err
	})
	return srv, err
}

// serverIn returns server id as tx sees it.
func (s *Store) serverIn(tx *bolt.Tx, id int64) (Server, error) {
	key := itob(id)
	raw := tx.Bucket(bucketServers).Get(key)
	if raw == nil {
		return Server{}, ErrNotFound
	}
	return s.servers.decode(key, raw)
}

// Account returns one account.
func (s *Store) Account(id int64) (Account, error) {
	var a Account
	err := s.view(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketAccounts), itob(id), &a)
	})
	return a, err
}

// LookupToken returns the record of the token whose hash is given.
func (s *Store) LookupToken(hash []byte) (Token, error) {
	var t Token
	err := s.view(func(tx *bolt.Tx) error {
		return getJSON(tx.Bucket(bucketTokens), hash, &t)
	})
	return t, err
}

// AddToken stores another token for an existing account or server.
func (s *Store) AddToken(t NewToken) error {
	return s.update(func(tx *bolt.Tx) error {
		switch t.Kind {
		case KindServer:
			if tx.Bucket(bucketServers).Get(itob(t.ServerID)) == nil {
				return ErrServerMissing
			}
		case KindAccount:
			if tx.Bucket(bucketAccounts).Get(itob(t.AccountID)) == nil {
				return fmt.Errorf("store: account %d: %w", t.AccountID, ErrNotFound)
			}
		default:
			return fmt.Errorf("store: token kind %q", t.Kind)
		}
		return putToken(tx, t)
	})
}

func createAccount(tx *bolt.Tx, name string, now time.Time) (Account, error) {
	b := tx.Bucket(bucketAccounts)
	seq, err := b.NextSequence()
	if err != nil {
		return Account{}, err
	}
	a := Account{ID: int64(seq), Name: name, CreatedAt: now.UTC()}
	return a, putJSON(b, itob(a.ID), a)
}

func createServer(tx *bolt.Tx, srv Server, now time.Time) (Server, error) {
	b := tx.Bucket(bucketServers)
	srv.ID = 0
	if err := uniqueServerName(b, srv); err != nil {
		return Server{}, err
	}
	seq, err := b.NextSequence()
	if err != nil {
		return Server{}, err
	}
	srv.ID = int64(seq)
	srv.CreatedAt = now.UTC()
	if srv.DeliveryType == "" {
		srv.DeliveryType = DeliveryLive
	}
	if srv.TrackLinks == "" {
		srv.TrackLinks = TrackLinksNone
	}
	if srv.RetentionDays == 0 {
		srv.RetentionDays = DefaultRetentionDays
	}
	if srv.InboundHash == "" {
		var h [16]byte
		// crypto/rand.Read never returns an error on supported platforms.
		_, _ = rand.Read(h[:])
		srv.InboundHash = hex.EncodeToString(h[:])
	}
	if err := putJSON(b, itob(srv.ID), srv); err != nil {
		return Server{}, err
	}
	mail, err := tx.Bucket(bucketMail).CreateBucket(itob(srv.ID))
	if err != nil {
		return Server{}, err
	}
	for _, name := range [][]byte{bucketMessages, bucketRaw, bucketByTime, bucketEvents, bucketSuppressed} {
		if _, err := mail.CreateBucket(name); err != nil {
			return Server{}, err
		}
	}
	return srv, nil
}

func putToken(tx *bolt.Tx, t NewToken) error {
	if len(t.Hash) == 0 {
		return fmt.Errorf("store: token without hash")
	}
	b := tx.Bucket(bucketTokens)
	if b.Get(t.Hash) != nil {
		return fmt.Errorf("store: token: %w", ErrDuplicate)
	}
	return putJSON(b, t.Hash, t.Token)
}

// itob encodes an ID as a big-endian key, so keys sort by ID.
func itob(v int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(v))
	return b
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	data := b.Get(key)
	if data == nil {
		return ErrNotFound
	}
	return json.Unmarshal(data, v)
}
