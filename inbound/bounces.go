package inbound

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/postern/postern/internal/feedback"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// bounceTarget is a message whose return path a notice came to.
type bounceTarget struct {
	serverID int64
	msg      store.Message
}

// maxKeptNotice bounds what of an unclassified notice is kept in its
// bounce's details, to be shown.
const maxKeptNotice = 16 << 10

// notice records what a notice to a message's return path says: each
// failed recipient of a DSN as a bounce classified by the rules of
// synchronous replies, a complaint as a SpamComplaint, anything else as
// an Unknown bounce holding the notice, never dropped. It returns the
// kind, for the metric.
func (ss *session) notice(t bounceTarget, data []byte) (string, error) {
	n := feedback.Read(data)
	now := ss.s.cfg.Now()
	record := func(o store.Outcome) error {
		_, err := ss.s.cfg.Store.RecordLateBounce(t.serverID, t.msg.MessageID, o, now)
		return err
	}
	switch n.Kind {
	case feedback.DSN:
		for _, r := range n.Recipients {
			rcpt, ok := recipientOf(t.msg, r.Address)
			if !ok || r.Action != "failed" {
				continue // a delay, a success, or someone else's
			}
			reply := dsnReply(r)
			c := relay.ClassifyReply(reply)
			bounce := c.Bounce
			if c.Outcome != relay.Bounced {
				// Failed for good after temporary failures.
				bounce = relay.BounceTransient
			}
			if err := record(store.Outcome{Recipient: rcpt, Type: store.EventBounced, Inactivate: bounce.Inactivates(),
				Details: store.EventDetails{DeliveryMessage: reply.String(), BounceType: bounce.String(), BounceTypeCode: int(bounce),
					Summary: "A delivery status notification (DSN) arrived after delivery: " + dsnSummary(bounce)}}); err != nil {
				return "", err
			}
		}
		return "dsn", nil
	case feedback.Complaint:
		rcpt, ok := recipientOf(t.msg, n.Complainer)
		if !ok {
			rcpt = t.msg.Recipients[0] // complainers are often redacted; a message has one recipient, mostly
		}
		return "complaint", record(store.Outcome{Recipient: rcpt, Type: store.EventBounced, Inactivate: true,
			Details: store.EventDetails{DeliveryMessage: "Feedback-Type: " + n.FeedbackType, BounceType: relay.BounceSpamComplaint.String(),
				BounceTypeCode: int(relay.BounceSpamComplaint), Summary: "The recipient marked the message as spam (an ARF report). It is now inactive for this server."}})
	}
	kept := string(data)
	if len(kept) > maxKeptNotice {
		kept = kept[:maxKeptNotice]
	}
	return "other", record(store.Outcome{Recipient: t.msg.Recipients[0], Type: store.EventBounced,
		Details: store.EventDetails{DeliveryMessage: kept, BounceType: relay.BounceUnknown.String(), BounceTypeCode: int(relay.BounceUnknown),
			Summary: "A message that is neither a DSN nor a complaint arrived at the return path; it is kept here: " + strings.TrimSpace(n.Subject)}})
}

// recipientOf finds addr among the message's recipients.
func recipientOf(m store.Message, addr string) (string, bool) {
	for _, r := range m.Recipients {
		if strings.EqualFold(r, addr) {
			return r, true
		}
	}
	return "", false
}

// dsnReply is a DSN recipient's status as the SMTP reply the relay would
// have classified: the Diagnostic-Code when it is one, else the Status.
func dsnReply(r feedback.Recipient) relay.Reply {
	var reply relay.Reply
	if f := strings.Fields(r.Diagnostic); len(f) > 0 {
		if code, err := strconv.Atoi(f[0]); err == nil && code >= 200 && code < 600 {
			reply.Code, reply.Text = code, strings.TrimSpace(strings.TrimPrefix(r.Diagnostic, f[0]))
		}
	}
	var e relay.EnhancedCode
	if n, _ := fmt.Sscanf(r.Status, "%d.%d.%d", &e[0], &e[1], &e[2]); n == 3 {
		reply.Enhanced = e
		if reply.Code == 0 {
			reply.Code = map[int]int{2: 250, 4: 450, 5: 550}[e[0]]
		}
	}
	if reply.Text == "" {
		reply.Text = r.Diagnostic
	}
	if reply.Code == 0 {
		reply.Code = 550 // Action: failed, and nothing more said
	}
	return reply
}

func dsnSummary(b relay.BounceType) string {
	if t, ok := store.LookupBounceType(b.String()); ok {
		return t.Description
	}
	return "the receiving server gave up on the message."
}
