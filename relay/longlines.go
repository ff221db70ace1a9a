package relay

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/postern/postern/internal/message"
)

// maxWireLine is RFC 5321's limit on a line's length, its CRLF not
// counted (§4.5.3.1.6: 1,000 octets with the CRLF).
const maxWireLine = 998

// fitLines returns raw with every MIME leaf part that has a line longer
// than RFC 5321 allows re-encoded as quoted-printable, as good MTAs do
// before relaying: Postern accepts lines up to max-line-length, since
// application HTML often has them, but what leaves it obeys the limit.
// Other parts stay byte for byte; a message without such a line is
// returned as it is. It is a pure function of raw, so a retry, which
// reuses the first attempt's DKIM signature, sends the very bytes that
// were signed.
func fitLines(raw []byte) []byte {
	if !hasLongLine(raw) {
		return raw
	}
	return fitEntity(raw, 0)
}

// hasLongLine reports whether b has a line over maxWireLine.
func hasLongLine(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return len(b) > maxWireLine
		}
		if line := bytes.TrimSuffix(b[:i], []byte("\r")); len(line) > maxWireLine {
			return true
		}
		b = b[i+1:]
	}
	return false
}

// fitEntity re-encodes the long-lined leaves of one MIME entity.
func fitEntity(entity []byte, depth int) []byte {
	end := bytes.Index(entity, []byte("\r\n\r\n"))
	if end < 0 || !hasLongLine(entity[end+4:]) {
		// No body, or the long line is in the header, which no
		// transfer encoding can fix: left to the receiver.
		return entity
	}
	header, body := entity[:end+2], entity[end+4:]
	fields := message.Split(header)
	mediaType, params, err := mime.ParseMediaType(fields.Get("Content-Type"))
	if err == nil && strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "" && depth < message.MaxDepth {
		parts := fitParts(body, params["boundary"], depth)
		out := make([]byte, 0, len(header)+2+len(parts))
		return append(append(append(out, header...), "\r\n"...), parts...)
	}
	var decoded []byte
	switch strings.ToLower(fields.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		if decoded, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err != nil {
			return entity
		}
	case "base64":
		if decoded, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(body))); err != nil {
			return entity
		}
	default: // 7bit, 8bit, binary, or none
		decoded = body
	}
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/16)
	for _, f := range fields.Fields {
		if !f.Is("Content-Transfer-Encoding") {
			out.Write(f.Raw)
		}
	}
	out.Write(fields.Body) // lines after one that is not a field, kept
	out.WriteString("Content-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(&out)
	w.Write(decoded) // a bytes.Buffer does not fail
	w.Close()
	return out.Bytes()
}

// fitParts re-encodes the parts of a multipart body between its
// delimiter lines, which stay as they are, as do its preamble and
// epilogue.
func fitParts(body []byte, boundary string, depth int) []byte {
	delim := []byte("--" + boundary)
	var out bytes.Buffer
	out.Grow(len(body) + len(body)/16)
	// Offsets of the delimiter lines: a line that starts with delim
	// (RFC 2046 §5.1.1 allows trailing white space after it).
	partStart := -1
	closed := false
	for pos := 0; pos < len(body) && !closed; {
		next := bytes.IndexByte(body[pos:], '\n')
		lineEnd := len(body)
		if next >= 0 {
			lineEnd = pos + next + 1
		}
		line := body[pos:lineEnd]
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t\r\n")
			if len(rest) == 0 || bytes.Equal(rest, []byte("--")) {
				if partStart >= 0 {
					// The CRLF before a delimiter belongs to it.
					part := bytes.TrimSuffix(body[partStart:pos], []byte("\r\n"))
					out.Write(fitEntity(part, depth+1))
					out.WriteString("\r\n")
				} else {
					out.Write(body[:pos]) // the preamble
				}
				out.Write(line)
				partStart = lineEnd
				closed = len(rest) == 2
				pos = lineEnd
				continue
			}
		}
		pos = lineEnd
	}
	if partStart < 0 {
		return body // no delimiter: not the multipart it says
	}
	if !closed {
		// No close delimiter: the last part runs to the end.
		out.Write(fitEntity(body[partStart:], depth+1))
		return out.Bytes()
	}
	out.Write(body[partStart:]) // the epilogue
	return out.Bytes()
}
