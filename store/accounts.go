package store

import (
	"time"
)

// Account owns servers and, later, sending domains.
type Account struct {
	ID        int64
	Name      string
	CreatedAt time.Time
	// RequireTwoFactor: the account's people sign in to the console
	// with a TOTP code too (set by an Owner).
	RequireTwoFactor bool `json:",omitempty"`
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
