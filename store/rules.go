package store

import (
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/internal/message"
)

// The rules below decide what an accepted message and a delivery attempt
// change; a backend persists what they return, in one transaction, and
// decides nothing itself.

// SandboxDelivery is the DeliveryMessage of a Sandbox server's events.
const SandboxDelivery = "Sandbox server: recorded as delivered; nothing was sent"

// Submission is an accepted message as Messages.Enqueue persists it.
type Submission struct {
	Message Message
	Raw     []byte
	// Events are recorded with the message: a Sandbox server's Delivered
	// events.
	Events []Event
	// Entry is the message's queue entry; nil when nothing is left to
	// deliver (a Sandbox server's message).
	Entry *QueueEntry
	// Limits are the server's; the backend counts against them in the
	// transaction that files the message, so that concurrent sessions,
	// on any node, cannot together exceed them.
	Limits Limits
}

// Limits are a server's sending limits; zero means none.
type Limits struct {
	PerMinute int // messages received in any 60 seconds
	PerDay    int // messages received in a UTC day
}

// LimitError refuses a message past one of its server's Limits.
type LimitError struct {
	PerDay bool // the daily quota; otherwise the rate per minute
	Max    int
}

func (e *LimitError) Error() string {
	if e.PerDay {
		return fmt.Sprintf("store: the server's daily quota of %d messages is reached", e.Max)
	}
	return fmt.Sprintf("store: the server's rate limit of %d messages per minute is reached", e.Max)
}

// Check refuses one more message, given the server's sent in the last
// minute and on the day, with a *LimitError.
func (l Limits) Check(lastMinute int, today int64) error {
	if l.PerMinute > 0 && lastMinute >= l.PerMinute {
		return &LimitError{Max: l.PerMinute}
	}
	if l.PerDay > 0 && today >= int64(l.PerDay) {
		return &LimitError{PerDay: true, Max: l.PerDay}
	}
	return nil
}

// Accept decides how a message its server accepted is kept. Its
// attachments' names are read from its MIME once, here, so listings need
// not read bodies. A Live server's message is queued for every
// recipient. A Sandbox server's message is delivered to nobody: it is
// recorded at once as delivered to every recipient, with no queue entry,
// since its outcome is known (and so costs one commit, not the three of a
// claim and a recorded attempt). A server's DeliveryType is set when it is
// created and never changes, so a message queued is always a Live
// server's, and the relay need not check.
func Accept(srv Server, msg Message, raw []byte) Submission {
	if msg.Attachments == nil {
		msg.Attachments = message.AttachmentNames(raw)
	}
	if msg.Status == "" {
		msg.Status = StatusQueued
	}
	sub := Submission{Message: msg, Raw: raw, Limits: Limits{PerMinute: srv.RateLimitPerMinute, PerDay: srv.DailyQuota}}
	if srv.DeliveryType != DeliverySandbox {
		sub.Entry = &QueueEntry{Due: msg.ReceivedAt, ServerID: msg.ServerID, MessageID: msg.MessageID, Pending: msg.Recipients}
		return sub
	}
	m := &sub.Message
	m.Status = StatusSent
	m.RecipientStatus = make(map[string]string, len(m.Recipients))
	sub.Events = make([]Event, 0, len(m.Recipients))
	for _, r := range m.Recipients {
		m.RecipientStatus[r] = EventDelivered
		sub.Events = append(sub.Events, Event{MessageID: m.MessageID, Recipient: r, Type: EventDelivered, ReceivedAt: m.ReceivedAt,
			Details: EventDetails{DeliveryMessage: SandboxDelivery}})
	}
	return sub
}

// Resolution is what one delivery attempt changes, as Queue.RecordAttempt
// persists it.
type Resolution struct {
	// Message is the message with its new Status and RecipientStatus.
	Message Message
	// Events are one per outcome, in the order of the outcomes.
	Events []ResolvedEvent
	// Suppressions make recipients inactive on the message's server.
	Suppressions []Suppression
	// Counters are the day's stats counters to add one to, in the
	// message's stream and tag (a bounce's type, for each bounce).
	Counters []string
	// Next is the queue entry due again for the recipients still
	// pending; nil when none is.
	Next *QueueEntry
}

// ResolvedEvent is an event and, for a bounce, the Bounce it files. The
// backend gives the Bounce its ID and Seq and sets Event.BounceID.
type ResolvedEvent struct {
	Event  Event
	Bounce *Bounce
}

// ResolveAttempt decides what attempt a, of a claimed entry of msg,
// changes: an event per outcome; for each bounce, a Bounce and its count
// in the day's stats; suppression of the recipients the attempt
// inactivates; the message's status; and the entry, due again at a.Retry
// while recipients remain pending. Recipients without an outcome stay
// pending, as do Transient ones.
func ResolveAttempt(msg Message, a Attempt) (Resolution, error) {
	e := a.Entry
	at := a.At.UTC()
	res := Resolution{Message: msg}
	m := &res.Message
	if len(a.Outcomes) > 0 {
		// The map is the caller's too: a new one keeps msg as it was.
		status := make(map[string]string, len(m.RecipientStatus)+len(a.Outcomes))
		for r, t := range m.RecipientStatus {
			status[r] = t
		}
		m.RecipientStatus = status
	}
	outcome := map[string]string{}
	for _, o := range a.Outcomes {
		ev := ResolvedEvent{Event: Event{MessageID: e.MessageID, Recipient: o.Recipient, Type: o.Type, ReceivedAt: at, Details: o.Details}}
		if o.Type == EventBounced {
			ev.Bounce = newBounce(m, o, at)
			res.Counters = append(res.Counters, ev.Bounce.Type)
		}
		res.Events = append(res.Events, ev)
		outcome[strings.ToLower(o.Recipient)] = o.Type
		if o.Type != EventTransient {
			m.RecipientStatus[o.Recipient] = o.Type
		}
		if o.Inactivate {
			res.Suppressions = append(res.Suppressions, Suppression{Email: strings.ToLower(o.Recipient), Reason: o.Details.BounceType,
				Since: at, MessageID: e.MessageID, Details: o.Details.DeliveryMessage})
		}
	}
	if len(m.RecipientStatus) == 0 {
		m.RecipientStatus = nil
	}
	var pending []string
	for _, r := range e.Pending {
		if t, ok := outcome[strings.ToLower(r)]; !ok || t == EventTransient {
			pending = append(pending, r)
		}
	}
	m.Status = MessageStatus(*m, len(pending) > 0)
	if len(pending) == 0 {
		return res, nil
	}
	if a.Retry.IsZero() {
		return res, fmt.Errorf("store: attempt leaves %d recipients of %s pending without a retry time", len(pending), e.MessageID)
	}
	next := e
	next.Due, next.Leased, next.Pending, next.Attempts = a.Retry, false, pending, e.Attempts+1
	if a.Signed && !e.Signed {
		next.Signature, next.Signed = a.Signature, true
	}
	res.Next = &next
	return res, nil
}

// ResolveLateBounce decides what a bounce or complaint about a recipient
// of msg that arrived after the attempt (a DSN, an ARF report) changes: a
// Bounced event, its Bounce and stats counter, the suppression when o
// inactivates, the recipient's status, and the message's. o is Bounced.
func ResolveLateBounce(msg Message, o Outcome, at time.Time) Resolution {
	at = at.UTC()
	res := Resolution{Message: msg}
	m := &res.Message
	status := make(map[string]string, len(m.RecipientStatus)+1)
	for r, t := range m.RecipientStatus {
		status[r] = t
	}
	status[o.Recipient] = EventBounced
	m.RecipientStatus = status
	b := newBounce(m, o, at)
	res.Events = []ResolvedEvent{{Event: Event{MessageID: msg.MessageID, Recipient: o.Recipient, Type: EventBounced, ReceivedAt: at, Details: o.Details}, Bounce: b}}
	res.Counters = []string{b.Type}
	if o.Inactivate {
		res.Suppressions = []Suppression{{Email: strings.ToLower(o.Recipient), Reason: b.Type, Since: at, MessageID: msg.MessageID, Details: o.Details.DeliveryMessage}}
	}
	m.Status = MessageStatus(*m, msg.Status == StatusQueued)
	return res
}

// newBounce is the Bounce a Bounced outcome of msg files, without the ID
// and Seq its backend gives it. A bounce of no known type is Unknown
// (Postmark's code 2048).
func newBounce(msg *Message, o Outcome, at time.Time) *Bounce {
	b := &Bounce{
		ServerID: msg.ServerID, MessageID: msg.MessageID,
		Type: o.Details.BounceType, TypeCode: o.Details.BounceTypeCode,
		Email: o.Recipient, From: FromAddress(msg.From), Tag: msg.Tag, Subject: msg.Subject,
		MessageStream: msg.MessageStream, BouncedAt: at,
		Summary: o.Details.Summary, Details: o.Details.DeliveryMessage, DestinationServer: o.Details.DestinationServer,
		Inactivated: o.Inactivate,
	}
	if b.Type == "" {
		b.Type, b.TypeCode = "Unknown", 2048
	}
	return b
}

// MessageStatus follows the recipients: Queued while any is pending, then
// Sent, Bounced or Partially sent.
func MessageStatus(m Message, pending bool) string {
	if pending {
		return StatusQueued
	}
	delivered, bounced := 0, 0
	for _, t := range m.RecipientStatus {
		switch t {
		case EventDelivered:
			delivered++
		case EventBounced:
			bounced++
		}
	}
	switch {
	case bounced == 0:
		return StatusSent
	case delivered == 0:
		return StatusBounced
	}
	return StatusPartial
}
