// Package message reads mail messages for Postern: the header fields as
// written (so a field left alone is kept byte for byte), addresses and
// encoded words decoded in their charsets, and the MIME parts people read.
//
// The header is split by hand, leniently, as a relay must: a line that is
// not a header field ends the header (as Postfix does) rather than
// failing the message, and bare LF line ends are accepted. Everything
// past the header (MIME structure, transfer encodings, charsets) is
// github.com/emersion/go-message's.
package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"

	// The charset package also gives go-message its CharsetReader.
	"github.com/emersion/go-message/charset"
)

// Field is one header field as written: its name, and its raw bytes with
// the name, continuation lines and line end.
type Field struct {
	Name string
	Raw  []byte
}

// Value returns the field's unfolded value, without the name.
func (f Field) Value() string {
	v := bytes.TrimRight(f.Raw[len(f.Name)+1:], "\r\n")
	s := strings.ReplaceAll(string(v), "\r\n", "")
	s = strings.ReplaceAll(s, "\n", "")
	return strings.TrimSpace(s)
}

// Is reports whether the field is named name, in any case.
func (f Field) Is(name string) bool { return strings.EqualFold(f.Name, name) }

// Header is a message split into its header fields and its body.
type Header struct {
	Fields []Field
	// Body is everything after the header section, starting after the
	// blank line that ends it.
	Body []byte
	// MissingSeparator is set when the header section ended at a line
	// that is not a header field rather than at a blank line.
	MissingSeparator bool
}

// Split splits raw into header fields and body. The fields' Raw and the
// Body share raw's memory.
func Split(raw []byte) Header {
	var h Header
	for pos := 0; pos < len(raw); {
		end := len(raw)
		if i := bytes.IndexByte(raw[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		content := bytes.TrimRight(raw[pos:end], "\r\n")
		switch {
		case len(content) == 0:
			h.Body = raw[end:]
			return h
		case (content[0] == ' ' || content[0] == '\t') && len(h.Fields) > 0:
			// A continuation line: extend the previous field, which
			// ends where this line starts.
			last := &h.Fields[len(h.Fields)-1]
			last.Raw = raw[pos-len(last.Raw) : end]
		default:
			name, ok := fieldName(content)
			if !ok {
				h.Body = raw[pos:]
				h.MissingSeparator = true
				return h
			}
			h.Fields = append(h.Fields, Field{Name: name, Raw: raw[pos:end]})
		}
		pos = end
	}
	return h
}

// fieldName returns the name of a header field line (RFC 5322 §3.6.8:
// printable ASCII but colon, then a colon).
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	for _, c := range line[:i] {
		if c < 33 || c > 126 {
			return "", false
		}
	}
	return string(line[:i]), true
}

// First returns the first field named name.
func (h Header) First(name string) (Field, bool) {
	for _, f := range h.Fields {
		if f.Is(name) {
			return f, true
		}
	}
	return Field{}, false
}

// Get returns the unfolded value of the first field named name, or "".
func (h Header) Get(name string) string {
	f, _ := h.First(name)
	if f.Raw == nil {
		return ""
	}
	return f.Value()
}

// wordDecoder decodes RFC 2047 encoded words in every charset go-message
// knows (Latin-1, Windows-1252, ISO-2022-JP, ...), and keeps the bytes of
// a word in a charset it does not know as they are: refusing a message
// over an exotic charset in a display name would lose mail.
var wordDecoder = &mime.WordDecoder{CharsetReader: func(name string, in io.Reader) (io.Reader, error) {
	if r, err := charset.Reader(name, in); err == nil {
		return r, nil
	}
	return in, nil
}}

// ParseAddresses reads an address list strictly (RFC 5322), decoding the
// display names' encoded words; the addresses are as written.
func ParseAddresses(v string) ([]*mail.Address, error) {
	return (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(v)
}

// DecodeText decodes the encoded words of a header value; text it cannot
// decode (an unknown charset, say) stays as written.
func DecodeText(v string) string {
	d, err := wordDecoder.DecodeHeader(v)
	if err != nil {
		return v
	}
	return d
}

// Address is a mailbox as written in a header: an address and a display
// name.
type Address struct {
	Email string
	Name  string
}

// ParseAddressList reads an address header leniently: what cannot be
// parsed is kept as written, so nothing the client sent disappears.
func ParseAddressList(v string) []Address {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	list, err := ParseAddresses(v)
	if err != nil {
		var out []Address
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, Address{Email: part})
			}
		}
		return out
	}
	out := make([]Address, len(list))
	for i, a := range list {
		out[i] = Address{Email: a.Address, Name: a.Name}
	}
	return out
}

// FromDomain returns the lower-case domain of the address in the first
// From field of raw.
func FromDomain(raw []byte) (string, error) {
	from := Split(raw).Get("From")
	if from == "" {
		return "", errors.New("the message has no From field")
	}
	list, err := ParseAddresses(from)
	if err != nil || len(list) == 0 {
		return "", fmt.Errorf("the From field %q has no address", from)
	}
	at := strings.LastIndexByte(list[0].Address, '@')
	if at < 0 {
		return "", fmt.Errorf("the From address %q has no domain", list[0].Address)
	}
	return strings.ToLower(strings.TrimSuffix(list[0].Address[at+1:], ".")), nil
}
