package store

import (
	"encoding/json"
	"time"
)

// Webhook is a URL a server's events are posted to, in Postmark's terms.
type Webhook struct {
	ID            int64
	ServerID      int64
	URL           string
	MessageStream string          // the stream whose events it gets
	HTTPAuth      *WebhookAuth    `json:",omitempty"`
	HTTPHeaders   []WebhookHeader `json:",omitempty"`
	Triggers      WebhookTriggers
	// Secret keys the HMAC of each request (X-Postern-Signature). It is
	// shown once, when the webhook is created; Postern needs it to sign,
	// so it is kept as it is, as DKIM private keys are.
	Secret string
	// FailingSince is when the calls began to fail, zero while they
	// succeed; Paused is set once they have failed for
	// WebhookPauseAfter, and cleared by an update.
	FailingSince time.Time `json:",omitzero"`
	Paused       bool      `json:",omitempty"`
	CreatedAt    time.Time
}

// WebhookAuth is HTTP basic authentication for a webhook's requests.
type WebhookAuth struct{ Username, Password string }

// WebhookHeader is a header sent with each request.
type WebhookHeader struct{ Name, Value string }

// WebhookTriggers are the events a webhook gets. Open and Click are
// accepted and kept, and never fire: Postern tracks no opens or clicks.
type WebhookTriggers struct {
	Open               bool
	Click              bool
	Delivery           bool
	Bounce             bool
	BounceContent      bool // include the bounce's Content
	SpamComplaint      bool
	SpamContent        bool
	SubscriptionChange bool
}

// Webhook triggers, as RecordType names them.
const (
	TriggerDelivery      = "Delivery"
	TriggerBounce        = "Bounce"
	TriggerSpamComplaint = "SpamComplaint"
)

// WebhookPauseAfter is how long a webhook's calls may fail before it is
// paused.
const WebhookPauseAfter = 24 * time.Hour

// WebhookDelivery is one call to make: an event's payload for one
// webhook, kept in the outbox from the transaction that recorded the
// event until the call succeeds or is given up.
type WebhookDelivery struct {
	ID        int64
	WebhookID int64
	ServerID  int64
	Trigger   string
	Payload   json.RawMessage
	TraceID   string // the same on every try, for the receiver to drop duplicates
	Attempts  int    // calls made so far
	Due       time.Time
	Leased    bool `json:",omitempty"` // claimed until Due
}

// WebhookAttempt is one call made, for GET /webhooks/{id}/deliveries.
type WebhookAttempt struct {
	WebhookID int64
	At        time.Time
	Trigger   string
	TraceID   string
	Status    int // the HTTP status; 0 when none came
	Duration  time.Duration
	Error     string `json:",omitempty"`
}

// MaxWebhookAttempts is how many past calls are kept per webhook.
const MaxWebhookAttempts = 100

// Webhooks keeps servers' webhooks and their outbox.
type Webhooks interface {
	// CreateWebhook files w with a new ID and returns it.
	CreateWebhook(w Webhook) (Webhook, error)
	// Webhook returns a server's webhook, or ErrNotFound.
	Webhook(serverID, id int64) (Webhook, error)
	// ListWebhooks returns a server's webhooks, of stream if not empty.
	ListWebhooks(serverID int64, stream string) ([]Webhook, error)
	// UpdateWebhook replaces a webhook, or answers ErrNotFound.
	UpdateWebhook(w Webhook) error
	// DeleteWebhook removes a webhook and its pending calls.
	DeleteWebhook(serverID, id int64) error
	// ReleaseWebhookLeases hands back, due now, the calls this node
	// holds: at its start, those it held when it stopped.
	ReleaseWebhookLeases(now time.Time) (int, error)
	// ClaimWebhookDeliveries leases up to max calls due at now for
	// lease: they come back if not finished by then.
	ClaimWebhookDeliveries(now time.Time, lease time.Duration, max int) ([]WebhookDelivery, error)
	// FinishWebhookDelivery records a call: d is done when next is nil,
	// due again at *next otherwise; attempt goes to the webhook's log
	// (the last MaxWebhookAttempts), and the webhook's FailingSince and
	// Paused are set with WebhookCalled.
	FinishWebhookDelivery(d WebhookDelivery, attempt WebhookAttempt, next *time.Time) error
	// WebhookAttempts returns a webhook's last calls, newest first.
	WebhookAttempts(serverID, webhookID int64) ([]WebhookAttempt, error)
	// WebhookOutboxDepth counts the calls still to make.
	WebhookOutboxDepth() (int, error)
}

// WebhookCalled is w after a call at at that succeeded or not: a success
// clears FailingSince; a failure starts it, and pauses w once it has
// lasted WebhookPauseAfter.
func WebhookCalled(w Webhook, ok bool, at time.Time) Webhook {
	switch {
	case ok:
		w.FailingSince = time.Time{}
	case w.FailingSince.IsZero():
		w.FailingSince = at
	case at.Sub(w.FailingSince) >= WebhookPauseAfter:
		w.Paused = true
	}
	return w
}

// deliveryPayload is Postmark's Delivery webhook.
type deliveryPayload struct {
	RecordType    string
	ServerID      int64
	MessageStream string
	MessageID     string
	Recipient     string
	Tag           string
	DeliveredAt   time.Time
	Details       string
	Metadata      map[string]string
}

// bouncePayload is Postmark's Bounce and SpamComplaint webhook: the
// Bounce object with the RecordType and the message's Metadata.
type bouncePayload struct {
	RecordType string
	BounceView
	Metadata map[string]string
}

// WebhookDeliveries are the calls an attempt's events make: one per
// event and webhook of the message's stream whose trigger is on and that
// is not paused. The backend files them in the transaction that records
// the events, so that a crash loses none. newTraceID names each.
func WebhookDeliveries(hooks []Webhook, msg Message, events []ResolvedEvent, now time.Time, newTraceID func() string) ([]WebhookDelivery, error) {
	var out []WebhookDelivery
	for _, re := range events {
		ev := re.Event
		for _, h := range hooks {
			if h.Paused || (h.MessageStream != "" && h.MessageStream != msg.MessageStream) {
				continue
			}
			var payload any
			trigger := ""
			switch {
			case ev.Type == EventDelivered && h.Triggers.Delivery:
				trigger = TriggerDelivery
				payload = deliveryPayload{
					RecordType: TriggerDelivery, ServerID: msg.ServerID, MessageStream: msg.MessageStream, MessageID: msg.MessageID,
					Recipient: ev.Recipient, Tag: msg.Tag, DeliveredAt: ev.ReceivedAt, Details: ev.Details.DeliveryMessage, Metadata: orEmpty(msg.Metadata),
				}
			case ev.Type == EventBounced && re.Bounce != nil && (re.Bounce.Type == TriggerSpamComplaint && h.Triggers.SpamComplaint ||
				re.Bounce.Type != TriggerSpamComplaint && h.Triggers.Bounce):
				// A complaint is a bounce of type SpamComplaint, posted
				// to its own trigger with its own RecordType.
				trigger = TriggerBounce
				if re.Bounce.Type == TriggerSpamComplaint {
					trigger = TriggerSpamComplaint
				}
				b := *re.Bounce
				b.ID, b.Inactive, b.DumpAvailable = ev.BounceID, b.Inactivated, true
				content := trigger == TriggerBounce && h.Triggers.BounceContent || trigger == TriggerSpamComplaint && h.Triggers.SpamContent
				p := bouncePayload{RecordType: trigger, BounceView: ViewBounce(b, content), Metadata: orEmpty(msg.Metadata)}
				payload = p
			default:
				continue
			}
			data, err := json.Marshal(payload)
			if err != nil {
				return nil, err
			}
			out = append(out, WebhookDelivery{WebhookID: h.ID, ServerID: h.ServerID, Trigger: trigger, Payload: data, TraceID: newTraceID(), Due: now})
		}
	}
	return out, nil
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
