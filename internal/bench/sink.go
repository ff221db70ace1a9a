// Package bench drives SMTP load and sinks it, for Postern's benchmarks.
//
// Run drives concurrent SMTP sessions against any SMTP server and
// measures what it gets back (closed loop, or open loop at a fixed
// offered rate); Sink is an SMTP server that accepts and discards
// everything, counting it. Both are behind `postern bench` and
// `postern sink`.
package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/smtpd"
)

// SinkOptions configure a Sink. The zero value accepts everything at once.
type SinkOptions struct {
	// Hostname is the name in the greeting; "postern-sink" if empty.
	Hostname string
	// Reply, if not nil, answers RCPT for a Fraction of the recipients.
	Reply *smtp.SMTPError
	// Fraction of recipients answered with Reply, from 0 to 1; the
	// refused ones are spread evenly: recipient n (counted from 1 over
	// the sink's life) is refused when floor(n·F) > floor((n−1)·F).
	Fraction float64
	// Delay is added before the reply to the end of DATA.
	Delay time.Duration
}

// ParseReply reads a reply such as "550", "550 5.1.1" or
// "451 4.3.0 try later" (a default text is used if none is given).
func ParseReply(s string) (*smtp.SMTPError, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, errors.New("empty reply")
	}
	code, err := strconv.Atoi(f[0])
	if err != nil || code < 400 || code > 599 {
		return nil, fmt.Errorf("reply code %q: want 4xx or 5xx", f[0])
	}
	e := &smtp.SMTPError{Code: code, EnhancedCode: smtp.NoEnhancedCode, Message: "Refused by postern sink"}
	rest := f[1:]
	if len(rest) > 0 {
		if ec, ok := parseEnhanced(rest[0]); ok {
			if ec[0] != code/100 {
				return nil, fmt.Errorf("enhanced code %s does not match %d", rest[0], code)
			}
			e.EnhancedCode = ec
			rest = rest[1:]
		}
	}
	if len(rest) > 0 {
		e.Message = strings.Join(rest, " ")
	}
	return e, nil
}

func parseEnhanced(s string) (smtp.EnhancedCode, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCode{}, false
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCode{}, false
		}
		ec[i] = n
	}
	return ec, ec[0] >= 2 && ec[0] <= 5
}

// SinkStats are a sink's counts since it started; /stats serves them.
type SinkStats struct {
	Messages   int64 // messages whose DATA ended with 250
	Recipients int64 // recipients accepted
	Bytes      int64 // message bytes read (after dot-unstuffing)
	Refused    int64 // recipients refused with the configured reply
	// Signed counts the messages whose header section (its first 8 KB)
	// has a DKIM-Signature field, so that a benchmark of a signing MTA
	// can check that it signed.
	Signed  int64
	FirstAt time.Time
	LastAt  time.Time // when the last message's data was read
	// MessagesPerSecond is Messages over LastAt − FirstAt.
	MessagesPerSecond float64
}

// Arrivals are the arrival times of one bench run's messages, matched by
// the X-Postern-Bench header Run writes in every message.
type Arrivals struct {
	Run      string
	Seq      []int64 // the message's number in the run
	UnixNano []int64 // when its data had been read, in the same order
}

// maxArrivals bounds the arrival times a sink keeps, over all runs (16
// bytes each).
const maxArrivals = 5_000_000

// Sink is an SMTP server that accepts and discards everything.
type Sink struct {
	opts   SinkOptions
	server *smtp.Server

	messages, recipients, bytes, refused, signed atomic.Int64
	rcptSeq                                      atomic.Int64
	firstAt, lastAt                              atomic.Int64 // unix nanos

	mu       sync.Mutex
	arrivals map[string]*Arrivals
	kept     int
}

// NewSink makes a sink; Serve it on a listener.
func NewSink(opts SinkOptions) *Sink {
	if opts.Hostname == "" {
		opts.Hostname = "postern-sink"
	}
	s := &Sink{opts: opts, arrivals: make(map[string]*Arrivals)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	srv.Domain = opts.Hostname
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxLineLength = 0 // the sink takes any line
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.server = srv
	return s
}

// Serve accepts connections on l until Close.
func (s *Sink) Serve(l net.Listener) error {
	err := s.server.Serve(replyBufferListener{l})
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the sink and closes its connections.
func (s *Sink) Close() error { return s.server.Close() }

// Stats returns the counts so far.
func (s *Sink) Stats() SinkStats {
	st := SinkStats{
		Messages:   s.messages.Load(),
		Recipients: s.recipients.Load(),
		Bytes:      s.bytes.Load(),
		Refused:    s.refused.Load(),
		Signed:     s.signed.Load(),
	}
	if f := s.firstAt.Load(); f != 0 {
		st.FirstAt = time.Unix(0, f)
		st.LastAt = time.Unix(0, s.lastAt.Load())
		if d := st.LastAt.Sub(st.FirstAt).Seconds(); d > 0 {
			st.MessagesPerSecond = float64(st.Messages) / d
		}
	}
	return st
}

// Summary is the one line `postern sink` prints when it stops.
func (st SinkStats) Summary() string {
	return fmt.Sprintf("sink: %d messages, %d recipients, %d bytes, %d recipients refused, %.0f msgs/s",
		st.Messages, st.Recipients, st.Bytes, st.Refused, st.MessagesPerSecond)
}

// ArrivalsOf returns a copy of the arrival times of run's messages.
func (s *Sink) ArrivalsOf(run string) Arrivals {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.arrivals[run]
	if a == nil {
		return Arrivals{Run: run, Seq: []int64{}, UnixNano: []int64{}}
	}
	return Arrivals{Run: run, Seq: append([]int64{}, a.Seq...), UnixNano: append([]int64{}, a.UnixNano...)}
}

// Handler serves GET /stats (SinkStats as JSON) and GET /arrivals?run=ID
// (Arrivals as JSON).
func (s *Sink) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Stats())
	})
	mux.HandleFunc("GET /arrivals", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.ArrivalsOf(r.URL.Query().Get("run")))
	})
	return mux
}

func (s *Sink) refuseNext() bool {
	if s.opts.Reply == nil || s.opts.Fraction <= 0 {
		return false
	}
	n := float64(s.rcptSeq.Add(1))
	return math.Floor(n*s.opts.Fraction) > math.Floor((n-1)*s.opts.Fraction)
}

func (s *Sink) arrived(run string, seq int64, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kept >= maxArrivals {
		return
	}
	a := s.arrivals[run]
	if a == nil {
		a = &Arrivals{Run: run}
		s.arrivals[run] = a
	}
	a.Seq = append(a.Seq, seq)
	a.UnixNano = append(a.UnixNano, at)
	s.kept++
}

// bufPool holds the buffers message data is read into, and discarded.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

type sinkSession struct {
	sink  *Sink
	rcpts int64
	head  []byte // the start of the header section, to find X-Postern-Bench
}

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }

// Auth accepts any AUTH PLAIN, so that a bench with -token can be pointed
// at the sink.
func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(string, string, string) error { return nil }), nil
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	if ss.sink.refuseNext() {
		ss.sink.refused.Add(1)
		return ss.sink.opts.Reply
	}
	ss.rcpts++
	return nil
}

// headScan is how much of a message is searched for X-Postern-Bench.
const headScan = 8 << 10

var benchHeader = []byte("\nX-Postern-Bench: ")

func (ss *sinkSession) Data(r io.Reader) error {
	bp := bufPool.Get().(*[]byte)
	buf := *bp
	var n int64
	ss.head = ss.head[:0]
	scanning := true
	for {
		m, err := r.Read(buf)
		if m > 0 {
			n += int64(m)
			if scanning {
				take := min(m, headScan-len(ss.head))
				ss.head = append(ss.head, buf[:take]...)
				if bytes.Contains(ss.head, []byte("\r\n\r\n")) || len(ss.head) >= headScan {
					scanning = false
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			bufPool.Put(bp)
			return err
		}
	}
	bufPool.Put(bp)
	now := time.Now().UnixNano()
	s := ss.sink
	s.firstAt.CompareAndSwap(0, now)
	s.lastAt.Store(now)
	s.bytes.Add(n)
	s.recipients.Add(ss.rcpts)
	s.messages.Add(1)
	if run, seq, ok := findBenchHeader(ss.head); ok {
		s.arrived(run, seq, now)
	}
	if hasDKIMSignature(ss.head) {
		s.signed.Add(1)
	}
	if s.opts.Delay > 0 {
		time.Sleep(s.opts.Delay)
	}
	return nil
}

// hasDKIMSignature reports whether the header section in head has a
// DKIM-Signature field (its name in any case).
func hasDKIMSignature(head []byte) bool {
	const name = "dkim-signature:"
	for len(head) > 0 {
		if len(head) >= len(name) && strings.EqualFold(string(head[:len(name)]), name) {
			return true
		}
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 || i == 0 {
			return false // the last (partial) line, or the end of the header
		}
		head = head[i+2:]
	}
	return false
}

// findBenchHeader finds "X-Postern-Bench: RUN SEQ" in the header section.
func findBenchHeader(head []byte) (string, int64, bool) {
	if end := bytes.Index(head, []byte("\r\n\r\n")); end >= 0 {
		head = head[:end+2]
	}
	i := bytes.Index(head, benchHeader)
	if i < 0 {
		return "", 0, false
	}
	v := head[i+len(benchHeader):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		v = v[:j]
	} else {
		return "", 0, false
	}
	sp := bytes.IndexByte(v, ' ')
	if sp <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(string(v[sp+1:]), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return string(v[:sp]), seq, true
}

func (ss *sinkSession) Reset()        { ss.rcpts = 0 }
func (ss *sinkSession) Logout() error { return nil }

// replyBufferListener hands go-smtp connections that hold its replies
// until it next reads (smtpd.ReplyBuffer): the three replies to a
// pipelined MAIL, RCPT and DATA then take one write, not three.
type replyBufferListener struct{ net.Listener }

func (l replyBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return smtpd.NewReplyBuffer(c), nil
}
