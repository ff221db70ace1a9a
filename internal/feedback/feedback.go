// Package feedback reads what comes back about sent mail at its return
// path: delivery status notifications (RFC 3464) and complaints in the
// Abuse Reporting Format (RFC 5965). Anything else is an unclassified
// notice, kept by the caller.
package feedback

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"strings"

	gomessage "github.com/emersion/go-message"
)

// Kind is what a notice is.
type Kind int

const (
	Other     Kind = iota // neither a DSN nor a complaint
	DSN                   // a delivery status notification
	Complaint             // an ARF report (abuse, fraud, ...)
)

// Recipient is one recipient's status in a DSN.
type Recipient struct {
	Address    string // Final-Recipient (else Original-Recipient), without its type
	Action     string // failed, delayed, delivered, relayed, expanded
	Status     string // the enhanced status code, e.g. 5.1.1
	Diagnostic string // Diagnostic-Code without its type, e.g. "550 5.1.1 User unknown"
}

// Notice is what a message to a return path says.
type Notice struct {
	Kind         Kind
	Recipients   []Recipient // of a DSN
	FeedbackType string      // of a complaint: abuse, fraud, ...
	Complainer   string      // of a complaint: Original-Rcpt-To, when given
	Subject      string      // of the notice itself
}

// MaxNotice bounds what is read of a notice's parts.
const MaxNotice = 1 << 20

// Read reads a notice. It never fails: what it cannot read is Other.
func Read(data []byte) Notice {
	e, err := gomessage.Read(bytes.NewReader(data))
	if err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return Notice{Kind: Other}
	}
	n := Notice{Kind: Other, Subject: e.Header.Get("Subject")}
	e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
		if err != nil || n.Kind != Other {
			return nil
		}
		mt, _, _ := part.Header.ContentType()
		switch mt {
		case "message/delivery-status", "message/global-delivery-status":
			body, _ := io.ReadAll(io.LimitReader(part.Body, MaxNotice))
			if rcpts := deliveryStatus(body); len(rcpts) > 0 {
				n.Kind, n.Recipients = DSN, rcpts
			}
		case "message/feedback-report":
			body, _ := io.ReadAll(io.LimitReader(part.Body, MaxNotice))
			blocks := fieldBlocks(body)
			if len(blocks) > 0 {
				n.Kind = Complaint
				n.FeedbackType = strings.ToLower(strings.TrimSpace(blocks[0].Get("Feedback-Type")))
				n.Complainer = strings.Trim(strings.TrimSpace(blocks[0].Get("Original-Rcpt-To")), "<>")
			}
		}
		return nil
	})
	return n
}

// deliveryStatus reads the per-recipient fields of a delivery-status body:
// the per-message block first, then one block per recipient.
func deliveryStatus(body []byte) []Recipient {
	blocks := fieldBlocks(body)
	var out []Recipient
	for _, b := range blocks {
		addr := typed(b.Get("Final-Recipient"))
		if addr == "" {
			addr = typed(b.Get("Original-Recipient"))
		}
		if addr == "" {
			continue // the per-message block
		}
		out = append(out, Recipient{
			Address:    strings.Trim(addr, "<>"),
			Action:     strings.ToLower(strings.TrimSpace(b.Get("Action"))),
			Status:     firstWord(b.Get("Status")),
			Diagnostic: typed(b.Get("Diagnostic-Code")),
		})
	}
	return out
}

func firstWord(v string) string {
	if f := strings.Fields(v); len(f) > 0 {
		return f[0]
	}
	return ""
}

// typed drops the "rfc822;" or "smtp;" type of a field's value.
func typed(v string) string {
	if _, rest, ok := strings.Cut(v, ";"); ok {
		return strings.Join(strings.Fields(rest), " ")
	}
	return strings.TrimSpace(v)
}

// fieldBlocks reads header-style blocks separated by blank lines.
func fieldBlocks(body []byte) []textproto.MIMEHeader {
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n")))))
	var out []textproto.MIMEHeader
	for range 1000 {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			out = append(out, h)
		}
		if err != nil {
			break
		}
	}
	return out
}
