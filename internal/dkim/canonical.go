package dkim

import (
	"bytes"
	"hash"
	"strings"

	"github.com/postern/postern/internal/message"
)

// Relaxed canonicalization (RFC 6376 §3.4.2 and §3.4.4), the only one
// Postern signs with. go-msgauth's signer does the same, but it hashes
// and canonicalizes the body once per key, in a goroutine of its own fed
// through a pipe: for the two keys of every message that was a tenth of
// the CPU a signature costs (BenchmarkSign). Here the body is hashed
// once, and the header fields are read once, from message.Split.

// isWSP reports whether c is DKIM's whitespace (SP or HTAB) or a line
// ending, which unfolding and relaxed canonicalization turn into WSP.
func isWSP(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// relaxedHeader returns a header field (name, colon, value, with its
// folds and line ending) canonicalized: the name in lower case, the value
// unfolded, each run of whitespace one space, none at either end, and
// CRLF.
func relaxedHeader(raw []byte) []byte {
	name, value, _ := bytes.Cut(raw, []byte(":"))
	out := make([]byte, 0, len(raw)+2)
	out = append(out, strings.ToLower(strings.TrimSpace(string(name)))...)
	out = append(out, ':')
	space, started := false, false
	for _, c := range value {
		if isWSP(c) {
			space = true
			continue
		}
		if space && started {
			out = append(out, ' ')
		}
		space, started = false, true
		out = append(out, c)
	}
	return append(out, '\r', '\n')
}

// hashRelaxedBody writes body to h canonicalized: each line with its runs
// of SP and HTAB made one space and none at its end, CRLF line endings
// (a bare LF ends a line too), no empty lines at the end, and an empty
// body empty.
func hashRelaxedBody(h hash.Hash, body []byte) {
	var line []byte
	pendingEmpty := 0 // empty lines seen since the last non-empty one
	for len(body) > 0 {
		var raw []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			raw, body = body[:i], body[i+1:]
		} else {
			raw, body = body, nil
		}
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		line = line[:0]
		space := false
		for _, c := range raw {
			if c == ' ' || c == '\t' {
				space = true
				continue
			}
			if space {
				line = append(line, ' ')
			}
			space = false
			line = append(line, c)
		}
		if len(line) == 0 {
			pendingEmpty++
			continue
		}
		for ; pendingEmpty > 0; pendingEmpty-- {
			h.Write(crlf)
		}
		h.Write(line)
		h.Write(crlf)
	}
}

var crlf = []byte("\r\n")

// pickFields returns, for each name of keys in turn, the last field of
// that name not yet picked (RFC 6376 §5.4.2: from the bottom up), or
// nil when there is none left (a name signed once more than it occurs).
func pickFields(fields []message.Field, keys []string) [][]byte {
	picked := make(map[string]int, len(keys))
	out := make([][]byte, len(keys))
	for i, k := range keys {
		skip := picked[strings.ToLower(k)]
		for j := len(fields) - 1; j >= 0; j-- {
			if !fields[j].Is(k) {
				continue
			}
			if skip == 0 {
				out[i] = fields[j].Raw
				break
			}
			skip--
		}
		picked[strings.ToLower(k)]++
	}
	return out
}
