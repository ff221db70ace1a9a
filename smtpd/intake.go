package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/postern/postern/internal/message"
)

// Postmark's special headers. Every header starting with X-PM- is removed
// before the message is stored, so none reaches a recipient.
const (
	headerPrefixPM       = "x-pm-"
	headerTag            = "x-pm-tag"
	headerMetadataPrefix = "x-pm-metadata-"
	headerStream         = "x-pm-message-stream"
	headerKeepID         = "x-pm-keepid"

	// DefaultStream is the stream every server has.
	DefaultStream = "outbound"
	// maxTagLength is Postmark's limit on a tag.
	maxTagLength = 1000
)

// headerValue is one header field's value, as written, with its name.
type headerValue struct{ name, value string }

// senderFieldName is a sender field's name as replies spell it.
func senderFieldName(lower string) string {
	if lower == "sender" {
		return "Sender"
	}
	return "Resent-From"
}

// intakeResult is what intake learned of a message and the message as it
// will be stored.
type intakeResult struct {
	from       string   // the first From field, decoded, for display
	fromFields []string // every From field's value as written (unfolded), for the sender policy
	// senderFields are the Sender and Resent-From fields' values, for the
	// sender policy, each with its field's name as written.
	senderFields []headerValue
	to, cc, bcc  []message.Address
	subject      string
	tag          string
	metadata     map[string]string
	stream       string
	messageIDHdr string // the Message-ID header value stored
	keptClientID bool
	// hasListUnsubscribe: the client gave its own List-Unsubscribe,
	// which Postern then leaves alone.
	hasListUnsubscribe bool
	stored             []byte // the message to store: Received + cleaned header + body
}

var (
	errTagTooLong = fmt.Errorf("X-PM-Tag is longer than %d characters", maxTagLength)
	// A CR not followed by LF inside the header section is one line to
	// Postern and two to some servers downstream, which is how a header
	// (a Bcc, say) could be smuggled past intake.
	errBareCR = errors.New("The message header contains a bare CR (carriage return without line feed); fix the line endings")
)

// stamp is what the receiving side adds to a message.
// stampRoom bounds what intake adds to a message besides line endings
// (at most one CR per LF, so the copy is at most twice the message): the
// Received field, a Message-ID and a Date.
const stampRoom = 4 << 10

type stamp struct {
	received  string // a Received field, without its line ending
	messageID string // the Message-ID to give, with its angle brackets
	date      time.Time
}

// intake reads Postmark's headers from a message, removes X-PM-* and Bcc
// headers, gives it Postern's Message-ID (unless the client asked to keep
// its own with X-PM-KeepID) and a Date if it has none, puts the Received
// field on top, and gives the body CRLF line endings (writeCRLF).
func intake(raw []byte, st stamp) (*intakeResult, error) {
	p := message.Split(raw)
	r := &intakeResult{stream: DefaultStream}
	keepID, hasDate := false, false
	if f, ok := p.First(headerKeepID); ok && strings.EqualFold(f.Value(), "true") {
		keepID = true
	}
	// The body is stored with CRLF line endings only (see writeCRLF);
	// one scan finds whether it needs that, and how much it grows.
	fixAt, growth := bareLineEnds(p.Body)
	var out bytes.Buffer
	out.Grow(len(raw) + len(st.received) + 128 + growth)
	out.WriteString(st.received)
	out.WriteString("\r\n")
	for _, f := range p.Fields {
		if hasBareCR(f.Raw) {
			return nil, errBareCR
		}
		lower := strings.ToLower(f.Name)
		switch {
		case lower == headerTag:
			r.tag = message.DecodeText(f.Value())
			if len([]rune(r.tag)) > maxTagLength {
				return nil, errTagTooLong
			}
			continue
		case strings.HasPrefix(lower, headerMetadataPrefix):
			key := f.Name[len(headerMetadataPrefix):]
			if key != "" {
				if r.metadata == nil {
					r.metadata = make(map[string]string)
				}
				r.metadata[key] = message.DecodeText(f.Value())
			}
			continue
		case lower == headerStream:
			if v := f.Value(); v != "" {
				r.stream = v
			}
			continue
		case strings.HasPrefix(lower, headerPrefixPM):
			continue
		case lower == "bcc":
			r.bcc = append(r.bcc, message.ParseAddressList(f.Value())...)
			continue
		case lower == "message-id":
			// Only the first non-empty one may be kept: an empty one
			// would otherwise stay beside the Message-ID given below.
			if !keepID || r.messageIDHdr != "" || f.Value() == "" {
				continue
			}
			r.messageIDHdr, r.keptClientID = f.Value(), true
		case lower == "from":
			r.fromFields = append(r.fromFields, f.Value())
			if r.from == "" {
				r.from = message.DecodeText(f.Value())
			}
		case lower == "sender" || lower == "resent-from":
			r.senderFields = append(r.senderFields, headerValue{name: senderFieldName(lower), value: f.Value()})
		case lower == "to":
			r.to = append(r.to, message.ParseAddressList(f.Value())...)
		case lower == "cc":
			r.cc = append(r.cc, message.ParseAddressList(f.Value())...)
		case lower == "subject":
			if r.subject == "" {
				r.subject = message.DecodeText(f.Value())
			}
		case lower == "date":
			hasDate = true
		case lower == "list-unsubscribe":
			r.hasListUnsubscribe = true
		}
		out.Write(f.Raw)
		if !bytes.HasSuffix(f.Raw, []byte("\n")) {
			// The message ended inside its header section.
			out.WriteString("\r\n")
		}
	}
	if r.messageIDHdr == "" {
		r.messageIDHdr = st.messageID
		out.WriteString("Message-ID: " + r.messageIDHdr + "\r\n")
	}
	if !hasDate {
		out.WriteString("Date: " + st.date.Format(time.RFC1123Z) + "\r\n")
	}
	out.WriteString("\r\n")
	writeCRLF(&out, p.Body, fixAt)
	r.stored = out.Bytes()
	return r, nil
}

// hasBareCR reports whether b has a CR that does not start a CRLF.
func hasBareCR(b []byte) bool {
	for i := bytes.IndexByte(b, '\r'); i >= 0; i = bytes.IndexByte(b, '\r') {
		if i+1 >= len(b) || b[i+1] != '\n' {
			return true
		}
		b = b[i+1:]
	}
	return false
}

// The body is stored with CRLF line endings only, as Postfix 3.9 does with
// smtpd_forbid_bare_newline = normalize: SMTP smuggling hides an end of
// DATA behind a bare line end ("\n.\n", "\r.\r\n") that Postern and
// go-smtp take for data but some server downstream takes for a line end,
// ending the message there and reading the rest as commands. The relay's
// client (go-smtp, through net/textproto's DotWriter) dot-stuffs only a
// line that starts after an LF and sends a bare CR as it is, so "\r.\r\n"
// would reach the next server unchanged. The stored body holds no line
// end but CRLF, which is also what goes on the wire and what the relay's
// DKIM signature covers:
//
//   - a bare LF (not after a CR) becomes CRLF;
//   - a bare CR (not before an LF) becomes CRLF too. That is the line
//     end a receiver that takes a bare CR for one would see, and once it
//     is a CRLF the line after it is dot-stuffed like any other, so
//     "\r.\r\n" goes out as "\r\n..\r\n". (CR CR LF is a bare CR then a
//     CRLF: two line ends.)
//
// The header section is not rewritten: a bare CR there is refused
// (errBareCR) and its fields are kept byte for byte. The size limit is
// unaffected: go-smtp and the in-flight reservation count the bytes the
// client sent, before intake.

// bareLineEnds returns the index of body's first bare CR or bare LF, or -1
// when body uses CRLF line endings only, and the bytes writeCRLF adds to
// it. A clean body, the common case, costs one scan and no allocation.
func bareLineEnds(body []byte) (at, growth int) {
	at = -1
	for pos := 0; pos < len(body); {
		end := len(body)
		lf := bytes.IndexByte(body[pos:], '\n')
		if lf >= 0 {
			end = pos + lf
		}
		// body[pos:end] is a line without its LF: its only CR may be
		// its last byte, and only when an LF follows.
		line := body[pos:end]
		if cr := bytes.IndexByte(line, '\r'); cr >= 0 && (lf < 0 || cr != len(line)-1) {
			at = pos + cr
			break
		}
		if lf < 0 {
			break
		}
		if len(line) == 0 || line[len(line)-1] != '\r' {
			at = end
			break
		}
		pos = end + 1
	}
	if at < 0 {
		return -1, 0
	}
	// Each bare CR and each bare LF gains a byte; a CRLF stays as is.
	rest := body[at:]
	crlf := bytes.Count(rest, []byte("\r\n"))
	return at, bytes.Count(rest, []byte("\r")) - crlf + bytes.Count(rest, []byte("\n")) - crlf
}

// writeCRLF writes body to out with each bare CR and bare LF made a CRLF;
// fixAt is bareLineEnds's index: body before it is written as is.
func writeCRLF(out *bytes.Buffer, body []byte, fixAt int) {
	if fixAt < 0 {
		out.Write(body)
		return
	}
	out.Write(body[:fixAt])
	for b := body[fixAt:]; len(b) > 0; {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			out.Write(b)
			return
		}
		out.Write(b[:i])
		out.WriteString("\r\n")
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
}
