package store

import (
	"encoding/json"
	"errors"
	"regexp"
	"time"
)

// Stream types, as Postmark names them.
const (
	StreamTransactional = "Transactional"
	StreamBroadcasts    = "Broadcasts"
)

// DefaultStreamID is the stream every server has, for transactional mail.
const DefaultStreamID = "outbound"

// Stream is a server's message stream: transactional or broadcast mail
// kept apart, with suppressions of its own.
type Stream struct {
	ServerID    int64
	ID          string // unique in the server: lower case letters, digits, '-' and '_'
	Name        string
	Description string `json:",omitempty"`
	Type        string // StreamTransactional or StreamBroadcasts
	// UnsubscribeHandling is Postmark's UnsubscribeHandlingType: "None",
	// or "Postmark" for Broadcasts, whose messages get List-Unsubscribe.
	UnsubscribeHandling string
	CreatedAt           time.Time
	UpdatedAt           time.Time `json:",omitzero"`
	ArchivedAt          time.Time `json:",omitzero"`
}

// OutboundStream is the stream every server has without creating it.
func OutboundStream(srv Server) Stream {
	return Stream{ServerID: srv.ID, ID: DefaultStreamID, Name: "Default Transactional Stream", Type: StreamTransactional,
		UnsubscribeHandling: "None", CreatedAt: srv.CreatedAt}
}

// ErrStreamExists: a server already has a stream with that ID.
var ErrStreamExists = errors.New("the server already has a message stream with this ID")

var streamIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,29}$`)

// ValidStreamID reports whether id may name a stream.
func ValidStreamID(id string) bool { return streamIDPattern.MatchString(id) }

// Suppression reasons and origins of a stream's suppressions, as
// Postmark names them.
const (
	ReasonManual      = "ManualSuppression"
	OriginRecipient   = "Recipient" // the recipient unsubscribed
	OriginCustomer    = "Customer"  // the API's user suppressed it
	SubscriptionEvent = "SubscriptionChange"
)

// StreamSuppression keeps a recipient from one stream of a server only
// (an unsubscribe, or a manual suppression). Bounces suppress for the
// whole server (Suppression).
type StreamSuppression struct {
	ServerID  int64
	Stream    string
	Email     string // lower case
	Reason    string // ReasonManual
	Origin    string // OriginRecipient or OriginCustomer
	CreatedAt time.Time
}

// Streams keeps servers' message streams and their suppressions.
type Streams interface {
	// CreateStream files s, or answers ErrStreamExists.
	CreateStream(s Stream) error
	// Stream returns a server's stream, or ErrNotFound (the outbound
	// stream is not stored: see OutboundStream).
	Stream(serverID int64, id string) (Stream, error)
	// ListStreams returns a server's stored streams.
	ListStreams(serverID int64) ([]Stream, error)
	// UpdateStream replaces a stream, or answers ErrNotFound.
	UpdateStream(s Stream) error
	// SuppressInStream files suppressions, replacing those of the same
	// addresses; with change set (an unsubscribe), the SubscriptionChange
	// calls of the server's webhooks go to the outbox in the same
	// transaction.
	SuppressInStream(sups []StreamSuppression, change *SubscriptionChange) error
	// UnsuppressInStream removes a stream's suppressions of emails.
	UnsuppressInStream(serverID int64, stream string, emails []string) error
	// StreamSuppressed returns the suppression of email in a stream.
	StreamSuppressed(serverID int64, stream, email string) (StreamSuppression, bool, error)
	// StreamSuppressions returns a stream's suppressions.
	StreamSuppressions(serverID int64, stream string) ([]StreamSuppression, error)
	// InstallationKey returns the installation's secret key, which signs
	// the links and addresses Postern gives out (unsubscribe links, DMARC
	// report addresses); made on first use, the same on every node.
	InstallationKey() ([]byte, error)
}

// SubscriptionChange is a recipient's unsubscribe, as webhooks get it.
type SubscriptionChange struct {
	ServerID  int64
	Stream    string
	MessageID string
	Recipient string
	ChangedAt time.Time
	Tag       string
	Metadata  map[string]string
}

// subscriptionPayload is Postmark's SubscriptionChange webhook.
type subscriptionPayload struct {
	RecordType        string
	MessageID         string
	ServerID          int64
	MessageStream     string
	ChangedAt         time.Time
	Recipient         string
	Origin            string
	SuppressSending   bool
	SuppressionReason string
	Tag               string
	Metadata          map[string]string
}

// SubscriptionDeliveries are the calls an unsubscribe makes: one per
// webhook of its stream with the SubscriptionChange trigger on.
func SubscriptionDeliveries(hooks []Webhook, c SubscriptionChange, newTraceID func() string) ([]WebhookDelivery, error) {
	var out []WebhookDelivery
	for _, h := range hooks {
		if h.Paused || !h.Triggers.SubscriptionChange || (h.MessageStream != "" && h.MessageStream != c.Stream) {
			continue
		}
		data, err := json.Marshal(subscriptionPayload{
			RecordType: SubscriptionEvent, MessageID: c.MessageID, ServerID: c.ServerID, MessageStream: c.Stream,
			ChangedAt: c.ChangedAt, Recipient: c.Recipient, Origin: OriginRecipient, SuppressSending: true,
			SuppressionReason: ReasonManual, Tag: c.Tag, Metadata: orEmpty(c.Metadata),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, WebhookDelivery{WebhookID: h.ID, ServerID: h.ServerID, Trigger: SubscriptionEvent, Payload: data, TraceID: newTraceID(), Due: c.ChangedAt})
	}
	return out, nil
}
