package message

import (
	"bytes"
	"io"
	"mime"
	"strings"

	gomessage "github.com/emersion/go-message"
)

// Body is what a message's MIME holds for people: its first text and
// HTML parts, decoded to UTF-8, and the file names of its attachments.
type Body struct {
	Text        string
	HTML        string
	Attachments []string
}

// MaxDepth bounds how deeply nested multiparts are followed.
const MaxDepth = 10

// ParseBody reads raw MIME into its text, its HTML and its attachments'
// names, each text part decoded from its transfer encoding and charset.
// Parts it cannot read are skipped, and a part in a charset it does not
// know is kept as sent: a message Postern accepted is never refused for
// its structure, so ParseBody never fails.
func ParseBody(raw []byte) Body {
	var b Body
	walk(raw, &b, true)
	return b
}

// AttachmentNames is ParseBody's attachment list alone, for the listing
// metadata filed at intake: no part is decoded.
func AttachmentNames(raw []byte) []string {
	var b Body
	walk(raw, &b, false)
	return b.Attachments
}

// walk reads raw, as Postern stores messages: intake always ends the
// header with a blank line, so a header go-message cannot read is not a
// message's.
func walk(raw []byte, b *Body, bodies bool) {
	if e, _ := gomessage.Read(bytes.NewReader(raw)); e != nil {
		walkEntity(e, b, bodies, 0)
	}
}

func walkEntity(e *gomessage.Entity, b *Body, bodies bool, depth int) {
	if mr := e.MultipartReader(); mr != nil {
		if depth >= MaxDepth {
			return
		}
		for {
			// A part in an unknown charset or encoding comes with an
			// error but can be read as sent; no part ends the walk.
			p, _ := mr.NextPart()
			if p == nil {
				return
			}
			walkEntity(p, b, bodies, depth+1)
		}
	}
	mt, params, err := e.Header.ContentType()
	if err != nil || mt == "" {
		mt, params = "text/plain", map[string]string{}
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if disp == "attachment" || (name != "" && disp != "inline") || (mt != "text/plain" && mt != "text/html") {
		if name == "" {
			name = "attachment" // a part with no name still counts
		}
		b.Attachments = append(b.Attachments, DecodeText(name))
		return
	}
	if !bodies || (mt == "text/plain" && b.Text != "") || (mt == "text/html" && b.HTML != "") {
		return
	}
	data, err := io.ReadAll(e.Body)
	if err != nil && len(data) == 0 {
		return
	}
	if mt == "text/plain" {
		b.Text = string(data)
	} else {
		b.HTML = string(data)
	}
}

// ContentType returns the media type and parameters of a header's
// Content-Type field; a missing or unreadable one is text/plain.
func ContentType(h Header) (string, map[string]string) {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return "text/plain", map[string]string{}
	}
	return strings.ToLower(mt), params
}
