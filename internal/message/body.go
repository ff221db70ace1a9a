package message

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
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
	// Postern stores messages with a blank line ending the header, so a
	// header go-message cannot read is not a message's.
	if e, _ := gomessage.Read(bytes.NewReader(raw)); e != nil {
		walkEntity(e, &b, 0)
	}
	return b
}

// AttachmentNames is ParseBody's attachment list alone, for the listing
// metadata filed at intake. It reads the structure only, through
// go-message's textproto: no part is decoded, so intake allocates no
// transfer or charset decoder per message.
func AttachmentNames(raw []byte) []string {
	br := bufio.NewReader(bytes.NewReader(raw))
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil
	}
	var names []string
	walkStructure(h, br, &names, 0)
	return names
}

func walkStructure(h textproto.Header, body io.Reader, names *[]string, depth int) {
	mt, params := mediaType(h.Get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") {
		if depth >= MaxDepth || params["boundary"] == "" {
			return
		}
		mr := textproto.NewMultipartReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				return
			}
			walkStructure(p.Header, p, names, depth+1)
		}
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	if name, ok := attachmentName(mt, params, disp, dparams); ok {
		*names = append(*names, name)
	}
}

// mediaType parses a Content-Type field; a missing or unreadable one is
// text/plain.
func mediaType(v string) (string, map[string]string) {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt == "" {
		return "text/plain", map[string]string{}
	}
	return mt, params
}

// attachmentName says whether a leaf part is an attachment, and its
// name: a part marked attachment, one with a file name not marked inline,
// and anything but text and HTML. A part with no name still counts.
func attachmentName(mt string, params map[string]string, disp string, dparams map[string]string) (string, bool) {
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if disp != "attachment" && (name == "" || disp == "inline") && (mt == "text/plain" || mt == "text/html") {
		return "", false
	}
	if name == "" {
		name = "attachment"
	}
	return DecodeText(name), true
}

func walkEntity(e *gomessage.Entity, b *Body, depth int) {
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
			walkEntity(p, b, depth+1)
		}
	}
	mt, params := mediaType(e.Header.Get("Content-Type"))
	disp, dparams, _ := e.Header.ContentDisposition()
	if name, ok := attachmentName(mt, params, disp, dparams); ok {
		b.Attachments = append(b.Attachments, name)
		return
	}
	if (mt == "text/plain" && b.Text != "") || (mt == "text/html" && b.HTML != "") {
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
