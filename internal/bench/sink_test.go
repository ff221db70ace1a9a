package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// startSink serves a sink on loopback, with its stats handler, until the
// test ends.
func startSink(t *testing.T, opts SinkOptions) (*Sink, string, string) {
	t.Helper()
	sink := NewSink(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sink.Serve(ln) }()
	hs := httptest.NewServer(sink.Handler())
	t.Cleanup(func() {
		hs.Close()
		sink.Close()
		if err := <-done; err != nil {
			t.Errorf("sink serve: %v", err)
		}
	})
	return sink, ln.Addr().String(), hs.URL + "/stats"
}

func TestParseReply(t *testing.T) {
	for in, want := range map[string]string{
		"550":                   "550 Refused by postern sink",
		"550 5.1.1":             "550 5.1.1 Refused by postern sink",
		"451 4.3.0 try later":   "451 4.3.0 try later",
		"452 too many, slow on": "452 too many, slow on",
	} {
		e, err := ParseReply(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		got := fmt.Sprint(e.Code)
		if e.EnhancedCode != smtp.NoEnhancedCode {
			got += fmt.Sprintf(" %d.%d.%d", e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2])
		}
		got += " " + e.Message
		if got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
	for _, bad := range []string{"", "250", "abc", "550 4.1.1", "99"} {
		if _, err := ParseReply(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSinkCounts sends with go-smtp's client, several recipients per
// message: the sink counts messages, accepted and refused recipients and
// the bytes of the message after dot-unstuffing, refuses exactly the
// configured fraction with the configured reply, and keeps the arrival of
// the messages carrying X-Postern-Bench.
func TestSinkCounts(t *testing.T) {
	reply, err := ParseReply("550 5.1.1 no such user")
	if err != nil {
		t.Fatal(err)
	}
	sink, addr, statsURL := startSink(t, SinkOptions{Reply: reply, Fraction: 0.25})
	const messages, rcpts = 20, 4
	var wantBytes int64
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var refusals int
	for i := range messages {
		body := fmt.Sprintf("From: a@example.com\r\nX-Postern-Bench: run1 %d\r\n\r\n.leading dot, stuffed on the wire\r\nline %d\r\n", i, i)
		switch i % 4 { // a quarter signed (the field's name in any case); one in the body only
		case 1:
			body = "DKIM-Signature: v=1; a=rsa-sha256; d=example.com;\r\n\tb=abc\r\n" + body
		case 2:
			body = "Received: by x\r\ndkim-signature: v=1;\r\n b=abc\r\n" + body
		case 3:
			body += "DKIM-Signature: in the body\r\n"
		}
		wantBytes += int64(len(body))
		if err := c.Mail("a@example.com", nil); err != nil {
			t.Fatal(err)
		}
		for r := range rcpts {
			err := c.Rcpt(fmt.Sprintf("r%d@example.net", r), nil)
			var se *smtp.SMTPError
			switch {
			case err == nil:
			case errorsAs(err, &se) && se.Code == 550 && se.EnhancedCode == smtp.EnhancedCode{5, 1, 1} && se.Message == "no such user":
				refusals++
			default:
				t.Fatalf("RCPT: %v", err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	c.Quit()
	st := sink.Stats()
	if st.Messages != messages || st.Recipients != messages*rcpts*3/4 || st.Refused != messages*rcpts/4 || st.Bytes != wantBytes {
		t.Errorf("stats %+v, want %d messages, %d recipients, %d refused, %d bytes", st, messages, messages*rcpts*3/4, messages*rcpts/4, wantBytes)
	}
	if st.Signed != messages/2 {
		t.Errorf("%d messages counted as signed, want %d", st.Signed, messages/2)
	}
	if refusals != messages*rcpts/4 {
		t.Errorf("client saw %d refusals", refusals)
	}
	if st.FirstAt.IsZero() || st.LastAt.Before(st.FirstAt) {
		t.Errorf("FirstAt %v, LastAt %v", st.FirstAt, st.LastAt)
	}

	// /stats has every field.
	resp, err := http.Get(statsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Messages", "Recipients", "Bytes", "Refused", "Signed", "FirstAt", "LastAt", "MessagesPerSecond"} {
		if _, ok := m[k]; !ok {
			t.Errorf("/stats has no %s: %v", k, m)
		}
	}
	if m["Messages"] != float64(messages) {
		t.Errorf("/stats Messages %v", m["Messages"])
	}

	a := sink.ArrivalsOf("run1")
	if len(a.Seq) != messages || len(a.UnixNano) != messages {
		t.Fatalf("arrivals %+v", a)
	}
	for i, seq := range a.Seq {
		if seq != int64(i) || a.UnixNano[i] <= 0 {
			t.Errorf("arrival %d: seq %d at %d", i, seq, a.UnixNano[i])
		}
	}
	if other := sink.ArrivalsOf("run2"); len(other.Seq) != 0 {
		t.Errorf("run2 arrivals %+v", other)
	}
}

func TestFindBenchHeader(t *testing.T) {
	for in, want := range map[string]string{
		"A: b\r\nX-Postern-Bench: abc 0000000042\r\n\r\nbody":     "abc 42",
		"A: b\r\n\r\nX-Postern-Bench: abc 0000000042\r\nbody\r\n": "", // in the body
		"X-Postern-Bench: abc 1\r\n\r\n":                          "", // first line: not after a newline
		"A: b\r\nX-Postern-Bench: abc x\r\n\r\n":                  "",
		"A: b\r\nX-Postern-Bench: abc 12":                         "", // cut short
	} {
		run, seq, ok := findBenchHeader([]byte(in))
		got := ""
		if ok {
			got = fmt.Sprintf("%s %d", run, seq)
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestPadding(t *testing.T) {
	for n := 0; n < 400; n++ {
		p := padding(n)
		if len(p) != max(n, 2) {
			t.Fatalf("padding(%d) is %d bytes", n, len(p))
		}
		for _, line := range strings.SplitAfter(string(p), "\r\n") {
			if line == "" {
				continue
			}
			if !strings.HasSuffix(line, "\r\n") || len(line) > 80 || strings.HasPrefix(line, ".") || strings.Count(line, "\n") != 1 {
				t.Fatalf("padding(%d): line %q", n, line)
			}
		}
	}
	m := newMessageMaker("abc", "a@example.com", "b@example.net", []int{100, 2048, 51200})
	for i, want := range []int{m.headerLen + 2, 2048, 51200} {
		h := m.appendHeader(nil, int64(i)*1234567, time.Now())
		if got := len(h) + len(m.body(int64(i))); got != want {
			t.Errorf("message %d: %d bytes, want %d", i, got, want)
		}
		if !bytes.HasSuffix(h, []byte("\r\n\r\n")) {
			t.Errorf("header %q", h)
		}
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
