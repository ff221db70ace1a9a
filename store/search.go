package store

import (
	"net/mail"
	"strings"
	"time"
)

// MessageQuery selects a server's messages. Zero fields do not filter.
type MessageQuery struct {
	Count, Offset int // the page; Count 0 returns no messages, only the total
	// Recipient matches an envelope recipient or a To, Cc or Bcc address,
	// ignoring case.
	Recipient string
	// FromEmail matches the From header's address or the envelope
	// sender, ignoring case.
	FromEmail string
	// FromDomain matches the domain of the From header's address,
	// ignoring case: the domain a message was sent as.
	FromDomain string
	Tag        string // the tag, ignoring case
	Subject    string // part of the subject, ignoring case
	Stream     string // the message stream
	// Statuses lists the message statuses wanted (StatusQueued, ...).
	Statuses []string
	// From and To bound ReceivedAt, both included.
	From, To time.Time
	// Metadata keys must have these values.
	Metadata map[string]string
}

func (q MessageQuery) Filters() bool {
	return q.Recipient != "" || q.FromEmail != "" || q.FromDomain != "" || q.Tag != "" || q.Subject != "" || q.Stream != "" ||
		len(q.Statuses) > 0 || len(q.Metadata) > 0
}

func (q MessageQuery) Match(m *Message) bool {
	if q.Tag != "" && !strings.EqualFold(q.Tag, m.Tag) {
		return false
	}
	if q.Stream != "" && q.Stream != m.MessageStream {
		return false
	}
	if q.Subject != "" && !strings.Contains(strings.ToLower(m.Subject), strings.ToLower(q.Subject)) {
		return false
	}
	if len(q.Statuses) > 0 {
		found := false
		for _, s := range q.Statuses {
			found = found || s == m.Status
		}
		if !found {
			return false
		}
	}
	for k, v := range q.Metadata {
		if got, ok := m.Metadata[k]; !ok || got != v {
			return false
		}
	}
	if q.FromEmail != "" && !strings.EqualFold(q.FromEmail, m.EnvelopeFrom) && !strings.EqualFold(q.FromEmail, FromAddress(m.From)) {
		return false
	}
	if q.FromDomain != "" && !strings.EqualFold(q.FromDomain, addressDomain(FromAddress(m.From))) {
		return false
	}
	if q.Recipient != "" && !hasRecipient(m, q.Recipient) {
		return false
	}
	return true
}

func hasRecipient(m *Message, r string) bool {
	for _, x := range m.Recipients {
		if strings.EqualFold(x, r) {
			return true
		}
	}
	for _, list := range [][]Address{m.To, m.Cc, m.Bcc} {
		for _, a := range list {
			if strings.EqualFold(a.Email, r) {
				return true
			}
		}
	}
	return false
}

func addressDomain(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// FromAddress is the address of a From header, or the header itself when
// it does not parse.
func FromAddress(from string) string {
	if a, err := mail.ParseAddress(from); err == nil {
		return a.Address
	}
	return strings.TrimSpace(from)
}

// SearchResult is a page of a search and the number of messages that
// match.
type SearchResult struct {
	Total    int
	Messages []Message
	// Capped: the search examined SearchScanLimit messages and stopped,
	// so Total is a lower bound and the page may be short.
	Capped bool
}
