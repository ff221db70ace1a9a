package bench

import (
	"fmt"
	"strings"
	"time"
)

// messageMaker writes the bench's messages: valid RFC 5322, each with a
// unique Message-ID and an X-Postern-Bench field naming the run and the
// message's number (which a Sink reads to time its arrival), padded to
// the size asked. The header section has a fixed length (the date and
// the number are fixed width), so each size's body is made once and only
// the header section is written per message.
type messageMaker struct {
	run       string
	from, to  string
	headerLen int
	bodies    [][]byte // one per size, in order
}

const seqDigits = 10

func newMessageMaker(run, from, to string, sizes []int) *messageMaker {
	m := &messageMaker{run: run, from: from, to: to}
	m.headerLen = len(m.appendHeader(nil, 0, time.Now()))
	for _, size := range sizes {
		m.bodies = append(m.bodies, padding(size-m.headerLen))
	}
	return m
}

// appendHeader appends message seq's header section, with the empty line
// that ends it.
func (m *messageMaker) appendHeader(b []byte, seq int64, now time.Time) []byte {
	b = append(b, "Date: "...)
	b = now.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 -0700")
	b = append(b, "\r\nFrom: <"...)
	b = append(b, m.from...)
	b = append(b, ">\r\nTo: <"...)
	b = append(b, m.to...)
	b = append(b, ">\r\nSubject: postern bench\r\nMessage-ID: <"...)
	b = append(b, m.run...)
	b = append(b, '.')
	b = appendSeq(b, seq)
	b = append(b, "@bench.postern.invalid>\r\nX-Postern-Bench: "...)
	b = append(b, m.run...)
	b = append(b, ' ')
	b = appendSeq(b, seq)
	b = append(b, "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"...)
	return b
}

func appendSeq(b []byte, seq int64) []byte {
	var d [seqDigits]byte
	for i := seqDigits - 1; i >= 0; i-- {
		d[i] = byte('0' + seq%10)
		seq /= 10
	}
	return append(b, d[:]...)
}

// body is message seq's body: sizes are used in turn.
func (m *messageMaker) body(seq int64) []byte { return m.bodies[seq%int64(len(m.bodies))] }

const padLine = "The quick brown fox jumps over the lazy dog, and Postern relays it along. 0123"

// padding is n bytes (at least 2) of text lines of at most 79 bytes, each
// ending with CRLF.
func padding(n int) []byte {
	n = max(n, 2)
	var sb strings.Builder
	sb.Grow(n)
	full := len(padLine[:76]) + 2 // 78
	lines, rest := n/full, n%full
	if rest == 1 { // no line is 1 byte long: make one line 79
		lines--
		rest += full
	}
	for range lines {
		sb.WriteString(padLine[:76])
		sb.WriteString("\r\n")
	}
	if rest > 0 {
		sb.WriteString(padLine[:rest-2])
		sb.WriteString("\r\n")
	}
	if sb.Len() != n {
		panic(fmt.Sprintf("bench: padding %d bytes made %d", n, sb.Len()))
	}
	return []byte(sb.String())
}
