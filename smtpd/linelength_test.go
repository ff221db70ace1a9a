package smtpd

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// A line longer than max-line-length can never be accepted: 554 5.6.0,
// over DATA and over BDAT alike, where DATA answered a temporary 451 and
// BDAT accepted it. The session stays usable, and lines between 998 and
// max-line-length are accepted.
func TestLongLineRefusedPermanently(t *testing.T) {
	ts := newTestServer(t, testOptions{})
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	const want = "554 5.6.0 Message has a line longer than 4096 bytes"
	long := "Subject: long\r\n\r\n<p>" + strings.Repeat("x", 5000) + "</p>\r\nend\r\n"
	fine := "Subject: fine\r\n\r\n<p>" + strings.Repeat("x", 3000) + "</p>\r\n"

	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	if got := c.sendData(long); got != want {
		t.Fatalf("DATA with a 5,007-byte line: %q, want %q", got, want)
	}
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	queuedID(t, c.sendData(fine))

	// BDAT: the same message in two chunks, the long line across both.
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	half := len(long) / 2
	c.writeAsync("BDAT " + itoa(half) + "\r\n" + long[:half])
	first := c.readReply()
	var last string
	if strings.HasPrefix(first, "250") {
		c.writeAsync("BDAT " + itoa(len(long)-half) + " LAST\r\n" + long[half:])
		last = c.readReply()
	} else {
		last = first
	}
	if last != want {
		t.Fatalf("BDAT with a 5,007-byte line: %q then %q, want %q", first, last, want)
	}
	c.expect("250", "RSET")
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	c.writeAsync("BDAT " + itoa(len(fine)) + " LAST\r\n" + fine)
	queuedID(t, c.readReply())
	if n := countMessages(t, ts.Store, ts.Inst.ServerID); n != 2 {
		t.Errorf("%d messages stored, want the 2 with lines under the limit", n)
	}
}

// FuzzLineLength: lineLengthReader fails exactly when a line is longer
// than max bytes without its CRLF or LF (a last line, unended, without a
// CR it ends with), however the input is cut into reads.
func FuzzLineLength(f *testing.F) {
	f.Add([]byte("short\r\nlines\r\n"), uint8(4), uint8(3))
	f.Add([]byte("0123456789\r\n"), uint8(4), uint8(9))
	f.Add([]byte("0123456789\r\n"), uint8(5), uint8(10))
	f.Add([]byte("abc\rdef\r\n"), uint8(2), uint8(7))
	f.Add([]byte("\n\n\n"), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, chunk, max uint8) {
		if chunk == 0 {
			chunk = 1
		}
		want := false
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if len(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")) > int(max) {
				want = true
			}
		}
		r := &lineLengthReader{r: &chunkedReader{data: data, n: int(chunk)}, max: int(max)}
		_, err := io.ReadAll(r)
		if got := errors.Is(err, errLineTooLong); got != want {
			t.Fatalf("%q cut every %d, max %d: too long %v, want %v", data, chunk, max, got, want)
		}
	})
}

// chunkedReader hands its data out n bytes at a time.
type chunkedReader struct {
	data []byte
	n    int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[n:]
	return n, nil
}
