package store

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
)

// Body is what a message's MIME holds for people: its first text and
// HTML parts, decoded, and the file names of its attachments.
type Body struct {
	Text        string
	HTML        string
	Attachments []string
}

// maxMIMEDepth bounds how deeply nested multiparts are followed.
const maxMIMEDepth = 10

// ParseBody reads raw MIME into its text, its HTML and its attachments'
// names. Parts it cannot read are skipped: a message Postern accepted is
// never refused for its structure, so ParseBody never fails.
func ParseBody(raw []byte) Body {
	var b Body
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return b
	}
	walkPart(textproto.MIMEHeader(m.Header), m.Body, &b, true, 0)
	return b
}

// AttachmentNames is ParseBody's attachment list alone, for the listing
// metadata filed at intake.
func AttachmentNames(raw []byte) []string {
	var b Body
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	walkPart(textproto.MIMEHeader(m.Header), m.Body, &b, false, 0)
	return b.Attachments
}

func walkPart(h textproto.MIMEHeader, body io.Reader, b *Body, bodies bool, depth int) {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || ct == "" {
		mt, params = "text/plain", map[string]string{}
	}
	if strings.HasPrefix(mt, "multipart/") {
		if depth >= maxMIMEDepth || params["boundary"] == "" {
			return
		}
		r := multipart.NewReader(body, params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err != nil {
				return
			}
			walkPart(p.Header, p, b, bodies, depth+1)
		}
	}
	disp, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if disp == "attachment" || (name != "" && disp != "inline") || (mt != "text/plain" && mt != "text/html") {
		if name == "" {
			name = "attachment" // a part with no name still counts
		}
		if dec, err := new(mime.WordDecoder).DecodeHeader(name); err == nil {
			name = dec
		}
		b.Attachments = append(b.Attachments, name)
		return
	}
	if !bodies || (mt == "text/plain" && b.Text != "") || (mt == "text/html" && b.HTML != "") {
		return
	}
	data, err := io.ReadAll(decodeTransfer(h.Get("Content-Transfer-Encoding"), body))
	if err != nil && len(data) == 0 {
		return
	}
	if mt == "text/plain" {
		b.Text = string(data)
	} else {
		b.HTML = string(data)
	}
}

func decodeTransfer(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &stripSpace{r: r})
	}
	return r
}

// stripSpace drops the line breaks and blanks of base64 text, which
// encoding/base64 would otherwise take for corruption (it skips only
// CR and LF).
type stripSpace struct{ r io.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
