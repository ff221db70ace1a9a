package message

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// Email is a message described field by field, as an application gives
// it to Postmark's POST /email; Compose writes it as MIME.
type Email struct {
	From            *mail.Address
	To, Cc, ReplyTo []*mail.Address // Bcc is no header: its addresses are only recipients
	Subject         string
	TextBody, HTML  string
	Headers         []HeaderField // further header fields, in order
	Attachments     []Attachment
	MessageID       string // with its angle brackets
	Date            time.Time
	Received        string // a Received field to put on top, without its line ending; "" for none
	ListUnsubscribe string // the List-Unsubscribe value, if any
	OneClick        bool   // add List-Unsubscribe-Post (RFC 8058)
}

// HeaderField is one header field an application adds.
type HeaderField struct{ Name, Value string }

// Attachment is a file the message carries: inline, shown in the HTML
// by its ContentID ("cid:…"), when ContentID is set.
type Attachment struct {
	Name        string
	Content     []byte
	ContentType string
	ContentID   string
}

// reservedFields are the header fields Compose writes itself, which
// Email.Headers may not set.
var reservedFields = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "reply-to": true, "subject": true, "date": true,
	"message-id": true, "mime-version": true, "content-type": true, "content-transfer-encoding": true,
	"content-disposition": true, "received": true, "return-path": true,
	"list-unsubscribe": true, "list-unsubscribe-post": true,
}

// CheckHeader says why an application's header field cannot be sent
// as given: a name that is not a field name, a field Compose writes
// itself, or a value with a line break (which would smuggle in fields).
func CheckHeader(h HeaderField) error {
	if h.Name == "" {
		return errors.New("a header has no Name")
	}
	for i := 0; i < len(h.Name); i++ {
		if c := h.Name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("header name %q is not a field name", h.Name)
		}
	}
	if reservedFields[strings.ToLower(h.Name)] {
		return fmt.Errorf("header %s is set by its own field of the request, not in Headers", h.Name)
	}
	if strings.ContainsAny(h.Value, "\r\n") {
		return fmt.Errorf("header %s has a line break in its value", h.Name)
	}
	return nil
}

// Compose writes e as MIME: text/plain, text/html, or both as
// multipart/alternative; inside multipart/related when there are inline
// attachments; inside multipart/mixed when there are other attachments.
// Header text that is not ASCII is written as encoded words; bodies as
// quoted-printable (text) or base64 (attachments), so that no line is
// longer than 76 characters.
func Compose(e Email) ([]byte, error) {
	var h gomail.Header
	if e.From != nil {
		h.SetAddressList("From", []*gomail.Address{(*gomail.Address)(e.From)})
	}
	setList := func(key string, list []*mail.Address) {
		if len(list) == 0 {
			return
		}
		out := make([]*gomail.Address, len(list))
		for i, a := range list {
			out[i] = (*gomail.Address)(a)
		}
		h.SetAddressList(key, out)
	}
	setList("To", e.To)
	setList("Cc", e.Cc)
	setList("Reply-To", e.ReplyTo)
	h.SetSubject(e.Subject)
	h.SetDate(e.Date)
	h.Set("Message-ID", e.MessageID)
	h.Set("MIME-Version", "1.0")
	if e.ListUnsubscribe != "" {
		h.Set("List-Unsubscribe", e.ListUnsubscribe)
		if e.OneClick {
			h.Set("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
		}
	}
	for _, f := range e.Headers {
		if err := CheckHeader(f); err != nil {
			return nil, err
		}
		h.Add(f.Name, mime.QEncoding.Encode("utf-8", f.Value))
	}

	var inline, attached []Attachment
	for _, a := range e.Attachments {
		if a.ContentID != "" {
			inline = append(inline, a)
		} else {
			attached = append(attached, a)
		}
	}
	var buf bytes.Buffer
	if e.Received != "" {
		buf.WriteString(e.Received + "\r\n")
	}
	// The tree, outermost first: each level writes its parts into the
	// writer it is given, whose header it completes.
	body := func(w func(gomessage.Header) (*gomessage.Writer, error)) error {
		return writeAlternative(w, e.TextBody, e.HTML)
	}
	if len(inline) > 0 {
		inner := body
		body = func(w func(gomessage.Header) (*gomessage.Writer, error)) error {
			return writeMultipart(w, "related", func(part func(gomessage.Header) (*gomessage.Writer, error)) error {
				if err := inner(part); err != nil {
					return err
				}
				return writeAttachments(part, inline)
			})
		}
	}
	if len(attached) > 0 {
		inner := body
		body = func(w func(gomessage.Header) (*gomessage.Writer, error)) error {
			return writeMultipart(w, "mixed", func(part func(gomessage.Header) (*gomessage.Writer, error)) error {
				if err := inner(part); err != nil {
					return err
				}
				return writeAttachments(part, attached)
			})
		}
	}
	top := func(ph gomessage.Header) (*gomessage.Writer, error) {
		for f := ph.Fields(); f.Next(); {
			h.Add(f.Key(), f.Value())
		}
		// go-message writes fields newest first; added again in that
		// order, they come out in the order they were set: From first.
		var ordered gomessage.Header
		for f := h.Fields(); f.Next(); {
			ordered.Add(f.Key(), f.Value())
		}
		return gomessage.CreateWriter(&buf, ordered)
	}
	if err := body(top); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeMultipart writes a multipart/<sub> entity through w, its parts
// written by parts through the part writer it is given.
func writeMultipart(w func(gomessage.Header) (*gomessage.Writer, error), sub string, parts func(func(gomessage.Header) (*gomessage.Writer, error)) error) error {
	var h gomessage.Header
	h.SetContentType("multipart/"+sub, nil)
	mw, err := w(h)
	if err != nil {
		return err
	}
	if err := parts(mw.CreatePart); err != nil {
		return err
	}
	return mw.Close()
}

// writeAlternative writes the text and HTML bodies: one of them alone,
// or both as multipart/alternative, plain text first (RFC 2046 §5.1.4).
func writeAlternative(w func(gomessage.Header) (*gomessage.Writer, error), text, html string) error {
	switch {
	case text != "" && html != "":
		return writeMultipart(w, "alternative", func(part func(gomessage.Header) (*gomessage.Writer, error)) error {
			if err := writeText(part, "text/plain", text); err != nil {
				return err
			}
			return writeText(part, "text/html", html)
		})
	case html != "":
		return writeText(w, "text/html", html)
	}
	return writeText(w, "text/plain", text)
}

func writeText(w func(gomessage.Header) (*gomessage.Writer, error), contentType, text string) error {
	var h gomessage.Header
	h.SetContentType(contentType, map[string]string{"charset": "utf-8"})
	h.Set("Content-Transfer-Encoding", textEncoding(text))
	pw, err := w(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write([]byte(crlf(text))); err != nil {
		return err
	}
	return pw.Close()
}

// textEncoding is 7bit for ASCII text whose lines fit, else
// quoted-printable.
func textEncoding(text string) string {
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 76 {
			return "quoted-printable"
		}
	}
	for i := 0; i < len(text); i++ {
		if c := text[i]; c >= 0x80 || (c < ' ' && c != '\r' && c != '\n' && c != '\t') {
			return "quoted-printable"
		}
	}
	return "7bit"
}

// crlf gives text CRLF line endings.
func crlf(text string) string {
	return strings.ReplaceAll(strings.ReplaceAll(text, "\r\n", "\n"), "\n", "\r\n")
}

func writeAttachments(w func(gomessage.Header) (*gomessage.Writer, error), atts []Attachment) error {
	for _, a := range atts {
		var h gomessage.Header
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return fmt.Errorf("attachment %q: ContentType %q: %v", a.Name, a.ContentType, err)
		}
		params["name"] = a.Name
		h.SetContentType(mt, params)
		disposition := "attachment"
		if a.ContentID != "" {
			disposition = "inline"
			h.Set("Content-ID", "<"+strings.Trim(strings.TrimPrefix(a.ContentID, "cid:"), "<>")+">")
		}
		h.SetContentDisposition(disposition, map[string]string{"filename": a.Name})
		h.Set("Content-Transfer-Encoding", "base64")
		pw, err := w(h)
		if err != nil {
			return err
		}
		if _, err := pw.Write(a.Content); err != nil {
			return err
		}
		if err := pw.Close(); err != nil {
			return err
		}
	}
	return nil
}
