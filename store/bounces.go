package store

import (
	"crypto/rand"
	"encoding/binary"
	"strings"
	"time"
)

// Bounce is a recipient's bounce, as Postmark's Bounces API shows it.
//
// IDs are random 53-bit numbers, unique within their server: they fit
// JavaScript's numbers (Postmark's clients read IDs as numbers), and,
// unlike a sequence shared by all servers, they tell a server nothing of
// how much other servers bounce, and no server's ID names another's
// bounce.
// MaxBounceID is the largest bounce ID: IDs fit JavaScript's numbers.
const MaxBounceID = 1<<53 - 1

// NewBounceID is a random bounce ID from 1 to MaxBounceID; its backend
// draws again while the server has it already.
func NewBounceID() int64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails on supported platforms
		if id := int64(binary.BigEndian.Uint64(b[:]) & MaxBounceID); id != 0 {
			return id
		}
	}
}

type Bounce struct {
	ID                int64
	Seq               uint64
	ServerID          int64
	MessageID         string
	Type              string // HardBounce, SoftBounce, ... (EventDetails.BounceType)
	TypeCode          int
	Email             string
	From              string // the message's From address
	Tag               string `json:",omitempty"`
	Subject           string
	MessageStream     string
	BouncedAt         time.Time
	Summary           string // what the bounce means, in words
	Details           string // the remote server's reply
	DestinationServer string `json:",omitempty"`
	// Inactivated: this bounce made the recipient inactive.
	Inactivated bool `json:",omitempty"`

	// Filled when read, never stored:
	// Inactive: the recipient is inactive now because of this bounce
	// (Inactivated, and not reactivated since).
	Inactive bool `json:"-"`
	// DumpAvailable: the message's raw MIME is still kept.
	DumpAvailable bool `json:"-"`
}

// BounceQuery selects a server's bounces. Zero fields do not filter.
type BounceQuery struct {
	Count, Offset int
	Type          string // bounce type name, ignoring case
	Inactive      *bool
	Email         string // part of the address, ignoring case
	Tag           string // ignoring case
	MessageID     string
	From, To      time.Time // BouncedAt, both included
}

func (q BounceQuery) Match(b *Bounce) bool {
	switch {
	case q.Type != "" && !strings.EqualFold(q.Type, b.Type),
		q.Inactive != nil && *q.Inactive != b.Inactive,
		q.Email != "" && !strings.Contains(strings.ToLower(b.Email), strings.ToLower(q.Email)),
		q.Tag != "" && !strings.EqualFold(q.Tag, b.Tag),
		q.MessageID != "" && q.MessageID != b.MessageID,
		!q.From.IsZero() && b.BouncedAt.Before(q.From),
		!q.To.IsZero() && b.BouncedAt.After(q.To):
		return false
	}
	return true
}

// BounceResult is a page of bounces and the number that match.
type BounceResult struct {
	Total   int
	Bounces []Bounce
	// Capped: the listing examined SearchScanLimit bounces and stopped,
	// so Total is a lower bound and the page may be short.
	Capped bool
}

// BounceTypeInfo is one of Postmark's bounce types, with its name and
// description for people.
type BounceTypeInfo struct {
	Type        string
	Code        int
	Name        string
	Description string
}

// BounceTypes are Postmark's bounce types in TypeCode order.
var BounceTypes = []BounceTypeInfo{
	{"HardBounce", 1, "Hard bounce", "The receiving server refused the address permanently (unknown user, no such mailbox)."},
	{"Transient", 2, "Message delayed", "The message could not be delivered for a while (the receiving server kept deferring it) and Postern gave up."},
	{"DnsError", 256, "DNS error", "The recipient's domain does not exist or accepts no mail."},
	{"Unknown", 2048, "Unknown bounce", "The receiving server refused the message for a reason Postern could not classify."},
	{"SoftBounce", 4096, "Soft bounce", "The receiving server refused the message for now (mailbox full, message too large); the address may work later."},
	{"BadEmailAddress", 100000, "Invalid email address", "The address is not a valid email address."},
	{"SpamComplaint", 100001, "Spam complaint", "The recipient marked the message as spam."},
	{"ManuallyDeactivated", 100002, "Manually deactivated", "The address was deactivated by hand."},
	{"Blocked", 100006, "ISP block", "The receiving server refused the message by policy (spam filter, block list, reputation)."},
	{"SMTPApiError", 100007, "SMTP API error", "The message was refused when it was submitted."},
	{"DMARCPolicy", 100009, "DMARC policy", "The receiving server refused the message because of the sender domain's DMARC policy."},
}

// LookupBounceType finds a bounce type by its name, ignoring case.
func LookupBounceType(name string) (BounceTypeInfo, bool) {
	for _, t := range BounceTypes {
		if strings.EqualFold(t.Type, name) {
			return t, true
		}
	}
	return BounceTypeInfo{}, false
}

// DescribeBounce is b's type with its name and description; a type
// Postmark does not have keeps its own name and the bounce's summary.
func DescribeBounce(b Bounce) BounceTypeInfo {
	if t, ok := LookupBounceType(b.Type); ok {
		return t
	}
	return BounceTypeInfo{Type: b.Type, Code: b.TypeCode, Name: b.Type, Description: b.Summary}
}

// Content is what Postmark's Content of a bounce holds: Postern bounces
// in the SMTP dialogue and receives no bounce message, so it is the
// receiving server's reply, with the server's name.
func (b Bounce) Content() string {
	if b.DestinationServer != "" {
		return b.DestinationServer + ": " + b.Details
	}
	return b.Details
}

// BounceView is Postmark's Bounce object, as the API answers it and the
// Bounce webhook posts it. Content is in the answer for one bounce only,
// as in Postmark.
type BounceView struct {
	ID            int64
	Type          string
	TypeCode      int
	Name          string
	Tag           string
	MessageID     string
	ServerID      int64
	MessageStream string
	Description   string
	Details       string
	Email         string
	From          string
	BouncedAt     time.Time
	DumpAvailable bool
	Inactive      bool
	CanActivate   bool
	Subject       string
	Content       *string `json:",omitempty"`
}

// ViewBounce shows b, with its Content when content is set.
func ViewBounce(b Bounce, content bool) BounceView {
	t := DescribeBounce(b)
	out := BounceView{
		ID: b.ID, Type: t.Type, TypeCode: t.Code, Name: t.Name, Tag: b.Tag,
		MessageID: b.MessageID, ServerID: b.ServerID, MessageStream: b.MessageStream,
		Description: t.Description, Details: b.Details, Email: b.Email, From: b.From,
		BouncedAt: b.BouncedAt.UTC(), DumpAvailable: b.DumpAvailable,
		Inactive: b.Inactive, CanActivate: b.Inactive, Subject: b.Subject,
	}
	if content {
		c := b.Content()
		out.Content = &c
	}
	return out
}
