package smtpd

import (
	"bytes"
	"errors"
	"io"
)

// errLineTooLong is lineLengthReader's error.
var errLineTooLong = errors.New("smtpd: a message line is longer than max-line-length")

// lineLengthReader fails with errLineTooLong once a line of the message
// it reads is longer than max bytes, its CRLF (or bare LF, which intake
// stores as CRLF) not counted. Intake reads DATA and BDAT through it, so
// both get the same 554 for a message that can never be accepted, where
// go-smtp's own limit would end the session (DATA) or not apply at all
// (BDAT).
type lineLengthReader struct {
	r      io.Reader
	max    int
	line   int  // bytes of the current line so far
	lastCR bool // the last byte read was a CR
}

func (l *lineLengthReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	rest := p[:n]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			l.line += len(rest)
			l.lastCR = rest[len(rest)-1] == '\r'
			break
		}
		l.line += i
		if i > 0 {
			l.lastCR = rest[i-1] == '\r'
		}
		if l.lastCR {
			l.line--
		}
		if l.line > l.max {
			return n, errLineTooLong
		}
		l.line, l.lastCR = 0, false
		rest = rest[i+1:]
	}
	// A line not yet ended is too long already when even a CR ending it
	// next would leave it over max.
	if l.line > l.max+1 || l.line == l.max+1 && !l.lastCR {
		return n, errLineTooLong
	}
	if err == io.EOF {
		last := l.line // the last line, unended: a CR it ends with does not count
		if l.lastCR {
			last--
		}
		if last > l.max {
			return n, errLineTooLong
		}
	}
	return n, err
}
