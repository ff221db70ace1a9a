package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Options say what Run sends, where, and how.
type Options struct {
	Addr     string // host:port
	Sessions int    // concurrent connections; default 32
	// Messages to send, or, if 0, send for Duration.
	Messages int64
	Duration time.Duration
	// Sizes of the messages in bytes, used in turn; default 2048.
	Sizes []int
	// PerConn is the number of messages per connection before it is
	// closed and another opened; 0 sends all on one connection.
	PerConn int
	// Token, if not empty, is sent with AUTH PLAIN as username and
	// password.
	Token    string
	StartTLS bool
	// TLS is the client's TLS configuration; if nil, one for Addr's host,
	// with InsecureSkipVerify set to Insecure.
	TLS      *tls.Config
	Insecure bool
	// Rate, if positive, is the open loop's offered load in messages/s
	// over all sessions: message k is due at start + k/Rate whatever the
	// replies, and its latency is measured from then. Every session
	// connects (and authenticates) before start: the loop measures a
	// steady load, not the first connections' storm.
	Rate     float64
	From, To string // default app@example.com, rcpt@example.net
	// SinkStats, if set, is a Sink's stats URL (http://host:port/stats):
	// after sending, Run waits (at most Wait, default 60s) for the sink to
	// have received every accepted message and reports EndToEnd.
	SinkStats string
	Wait      time.Duration
	// Client is "textproto" (default: PIPELINING when offered) or
	// "gosmtp" (go-smtp's client, one command at a time).
	Client string
	// Timeout bounds each connection setup and each message; default 1m.
	Timeout time.Duration
	// Progress, if not nil, gets a progress line about 5 times a second.
	Progress io.Writer
}

// Result is what a run measured; -json prints it as it is.
type Result struct {
	Addr       string
	Client     string
	Pipelining bool // the server offered PIPELINING and it was used
	Sessions   int
	Size       int   // mean message size in bytes
	Sizes      []int // the sizes used in turn
	PerConn    int
	Rate       float64 // offered messages/s in the open loop; 0 closed loop

	Sent     int64            // messages attempted
	Accepted int64            // 250 at the end of DATA
	Refused  map[string]int64 // by reply code ("550 5.1.1"), at whichever stage
	Errors   int64            // neither: connection or protocol errors
	// FirstError is the first of the errors, if any.
	FirstError string

	Seconds           float64 // from the first send to the last reply
	MessagesPerSecond float64 // Accepted / Seconds
	// LatencyFrom says where latency is measured from: "end of DATA" (to
	// its reply) in the closed loop, "scheduled send" (to the reply to the
	// end of DATA) in the open loop, so that queueing is not hidden.
	LatencyFrom string
	LatencyMs   Latency // of accepted and DATA-refused messages
	// EndOfDataMs, in the open loop, is the latency from the end of DATA
	// to its reply, as the closed loop measures it: the server's share of
	// LatencyMs, without the time a message waited at the client.
	EndOfDataMs *Latency `json:",omitempty"`

	EndToEnd *EndToEnd `json:",omitempty"`
}

// EndToEnd is what a sink saw of the accepted messages.
type EndToEnd struct {
	Delivered int64 // messages the sink received during the run
	Matched   int64 // of those, matched to this run's messages by X-Postern-Bench
	TimedOut  bool  // Wait ended before every accepted message arrived
	Seconds   float64
	// MessagesPerSecond is Delivered over the time from the first send to
	// the last arrival.
	MessagesPerSecond float64
	// Arrival*Ms are the times from a message's 250 to its arrival at
	// the sink (same clock: the sink and the bench on one machine).
	ArrivalP50Ms, ArrivalP90Ms, ArrivalP99Ms, ArrivalMaxMs float64
}

type worker struct {
	hist     histogram
	dataHist histogram // the open loop's latency from the end of DATA
	accepted int64
	errors   int64
	refused  map[string]int64
	firstErr error
	firstAt  time.Time
	acks     []ack // with SinkStats: each accepted message's 250
}

type ack struct{ seq, at int64 }

// Run sends until the count or duration is reached or ctx ends.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	run := newRunID()
	maker := newMessageMaker(run, o.From, o.To, o.Sizes)
	cfg := &dialConfig{addr: o.Addr, token: o.Token, startTLS: o.StartTLS, tls: o.TLS, timeout: o.Timeout, maker: maker}
	if cfg.tls == nil {
		host, _, _ := net.SplitHostPort(o.Addr)
		cfg.tls = &tls.Config{ServerName: host, InsecureSkipVerify: o.Insecure}
	}

	var baseline int64
	if o.SinkStats != "" {
		st, err := fetchStats(ctx, o.SinkStats)
		if err != nil {
			return nil, fmt.Errorf("sink stats: %w", err)
		}
		baseline = st.Messages
	}

	total := o.Messages
	if o.Rate > 0 && total == 0 {
		total = int64(math.Round(o.Rate * o.Duration.Seconds()))
	}
	var (
		next       atomic.Int64
		sent       atomic.Int64
		accepted   atomic.Int64
		notOK      atomic.Int64
		pipelining atomic.Bool
	)
	// The open loop's clock starts once every session has tried its first
	// connection (connected below); the closed loop's at once.
	var connected sync.WaitGroup
	begin := make(chan struct{})
	var start, stopAt time.Time
	workers := make([]*worker, o.Sessions)
	var wg sync.WaitGroup
	if o.Rate > 0 {
		connected.Add(len(workers))
	}
	for i := range workers {
		w := &worker{refused: make(map[string]int64)}
		workers[i] = w
		wg.Go(func() {
			var s sender
			onConn := 0
			defer func() {
				if s != nil {
					s.quit()
				}
			}()
			// claim takes the next message of a closed loop.
			claim := func() (int64, bool) {
				if ctx.Err() != nil || (!stopAt.IsZero() && time.Now().After(stopAt)) {
					return 0, false
				}
				k := next.Add(1) - 1
				return k, total == 0 || k < total
			}
			carried := int64(-1) // claimed, and its envelope maybe sent
			if o.Rate > 0 {
				// One that fails is tried again, and counted, for the
				// session's first message.
				if c, err := dial(o.Client, cfg, time.Now().Add(o.Timeout)); err == nil {
					s = c
					if rs, ok := s.(*rawSender); ok && rs.pipelining {
						pipelining.Store(true)
					}
				}
				connected.Done()
			}
			<-begin
			for ctx.Err() == nil || carried >= 0 {
				var k int64
				if carried >= 0 {
					k, carried = carried, -1
				} else if o.Rate == 0 {
					var ok bool
					if k, ok = claim(); !ok {
						return
					}
				} else if k = next.Add(1) - 1; total > 0 && k >= total {
					return
				}
				// connect opens the session's next connection; a failure
				// counts against message k.
				connect := func() bool {
					var err error
					s, err = dial(o.Client, cfg, time.Now().Add(o.Timeout))
					if err != nil {
						s = nil
						w.fail(failed(err))
						notOK.Add(1)
						if !isReply(err) {
							time.Sleep(50 * time.Millisecond) // do not spin on a refused connect
						}
						return false
					}
					if rs, ok := s.(*rawSender); ok && rs.pipelining {
						pipelining.Store(true)
					}
					onConn = 0
					return true
				}
				var due time.Time
				if o.Rate > 0 {
					due = start.Add(time.Duration(float64(k) / o.Rate * float64(time.Second)))
					// The open loop measures messages, not connection
					// setup (one-per-conn measures that): a session
					// connects while it waits for its next message,
					// as an application's connection pool would. A
					// connection late for the due time still counts.
					if s == nil && !connect() {
						sent.Add(1)
						continue
					}
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				}
				sent.Add(1)
				if w.firstAt.IsZero() {
					w.firstAt = time.Now()
				}
				deadline := time.Now().Add(o.Timeout)
				if s == nil && !connect() {
					continue
				}
				// In the closed loop, the next message's envelope goes
				// with this one's content when the connection goes on.
				more := false
				if rs, ok := s.(*rawSender); ok && rs.pipelining && o.Rate == 0 && (o.PerConn == 0 || onConn+1 < o.PerConn) {
					carried, more = claim()
					if !more {
						carried = -1
					}
				}
				out := s.send(k, deadline, more)
				onConn++
				if !out.endData.IsZero() {
					if o.Rate > 0 {
						w.hist.record(out.reply.Sub(due))
						w.dataHist.record(out.reply.Sub(out.endData))
					} else {
						w.hist.record(out.reply.Sub(out.endData))
					}
				}
				if out.accepted {
					w.accepted++
					accepted.Add(1)
					if o.SinkStats != "" {
						w.acks = append(w.acks, ack{k, out.reply.UnixNano()})
					}
				} else {
					w.fail(out)
					notOK.Add(1)
				}
				if out.closed {
					if out.err == nil {
						s.quit()
					} else {
						closeSender(s)
					}
					s = nil
				} else if o.PerConn > 0 && onConn >= o.PerConn {
					s.quit()
					s = nil
				}
			}
		})
	}

	connected.Wait()
	start = time.Now()
	if total == 0 {
		stopAt = start.Add(o.Duration)
	}
	close(begin)

	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if o.Progress != nil {
		progressWG.Go(func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					fmt.Fprint(o.Progress, "\r\033[K")
					return
				case <-t.C:
					printProgress(o.Progress, start, stopAt, total, sent.Load(), accepted.Load(), notOK.Load())
				}
			}
		})
	}
	wg.Wait()
	end := time.Now()
	close(progressDone)
	progressWG.Wait()

	res := &Result{
		Addr:        o.Addr,
		Client:      o.Client,
		Pipelining:  pipelining.Load(),
		Sessions:    o.Sessions,
		Sizes:       o.Sizes,
		PerConn:     o.PerConn,
		Rate:        o.Rate,
		Sent:        sent.Load(),
		Refused:     make(map[string]int64),
		LatencyFrom: "end of DATA",
	}
	if o.Rate > 0 {
		res.LatencyFrom = "scheduled send"
	}
	for _, s := range o.Sizes {
		res.Size += s
	}
	res.Size /= len(o.Sizes)
	var hist, dataHist histogram
	firstAt := end
	for _, w := range workers {
		hist.merge(&w.hist)
		dataHist.merge(&w.dataHist)
		res.Accepted += w.accepted
		res.Errors += w.errors
		for k, v := range w.refused {
			res.Refused[k] += v
		}
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
		if !w.firstAt.IsZero() && w.firstAt.Before(firstAt) {
			firstAt = w.firstAt
		}
	}
	res.Seconds = end.Sub(firstAt).Seconds()
	if res.Seconds > 0 {
		res.MessagesPerSecond = float64(res.Accepted) / res.Seconds
	}
	res.LatencyMs = hist.latency()
	if o.Rate > 0 {
		l := dataHist.latency()
		res.EndOfDataMs = &l
	}

	if o.SinkStats != "" {
		e2e, err := waitForSink(o, run, baseline, res.Accepted, firstAt, workers)
		if err != nil {
			return res, fmt.Errorf("sink stats: %w", err)
		}
		res.EndToEnd = e2e
	}
	return res, nil
}

func (o *Options) defaults() error {
	if o.Addr == "" {
		return errors.New("no address")
	}
	if o.Sessions <= 0 {
		o.Sessions = 32
	}
	if o.Messages < 0 || o.Duration < 0 || o.PerConn < 0 || o.Rate < 0 {
		return errors.New("negative count, duration, per-conn or rate")
	}
	if o.Messages == 0 && o.Duration == 0 {
		return errors.New("neither a number of messages nor a duration")
	}
	if o.Messages > 0 && o.Duration > 0 {
		return errors.New("both a number of messages and a duration")
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{2048}
	}
	for _, s := range o.Sizes {
		if s <= 0 {
			return fmt.Errorf("size %d", s)
		}
	}
	if o.From == "" {
		o.From = "app@example.com"
	}
	if o.To == "" {
		o.To = "rcpt@example.net"
	}
	if o.Wait <= 0 {
		o.Wait = 60 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	switch o.Client {
	case "":
		o.Client = "textproto"
	case "textproto", "gosmtp":
	default:
		return fmt.Errorf("client %q: want textproto or gosmtp", o.Client)
	}
	return nil
}

func dial(client string, cfg *dialConfig, deadline time.Time) (sender, error) {
	if client == "gosmtp" {
		return dialGo(cfg, deadline)
	}
	return dialRaw(cfg, deadline)
}

func closeSender(s sender) {
	switch s := s.(type) {
	case *rawSender:
		s.conn.Close()
	case *goSender:
		s.conn.Close()
	}
}

func isReply(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}

func (w *worker) fail(o outcome) {
	if o.refused != "" {
		w.refused[o.refused]++
		return
	}
	w.errors++
	if w.firstErr == nil {
		w.firstErr = o.err
	}
}

func newRunID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printProgress(w io.Writer, start, stopAt time.Time, total, sent, accepted, notOK int64) {
	elapsed := time.Since(start)
	frac := 0.0
	switch {
	case total > 0:
		frac = float64(sent) / float64(total)
	case !stopAt.IsZero():
		frac = float64(elapsed) / float64(stopAt.Sub(start))
	}
	frac = min(max(frac, 0), 1)
	const width = 30
	bar := make([]byte, width)
	for i := range bar {
		if float64(i) < frac*width {
			bar[i] = '='
		} else {
			bar[i] = ' '
		}
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(accepted) / s
	}
	fmt.Fprintf(w, "\r\033[K[%s] %3.0f%%  sent %d  accepted %d  not accepted %d  %.0f msgs/s", bar, frac*100, sent, accepted, notOK, rate)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func fetchStats(ctx context.Context, url string) (SinkStats, error) {
	var st SinkStats
	return st, getJSON(ctx, url, &st)
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// arrivalsURL is the /arrivals URL beside a /stats URL.
func arrivalsURL(statsURL, run string) string {
	base := statsURL
	if n := len(base) - len("/stats"); n >= 0 && base[n:] == "/stats" {
		base = base[:n]
	}
	return base + "/arrivals?run=" + run
}

func waitForSink(o Options, run string, baseline, accepted int64, firstAt time.Time, workers []*worker) (*EndToEnd, error) {
	ctx := context.Background()
	e := &EndToEnd{}
	deadline := time.Now().Add(o.Wait)
	var st SinkStats
	for {
		var err error
		if st, err = fetchStats(ctx, o.SinkStats); err != nil {
			return nil, err
		}
		if st.Messages-baseline >= accepted {
			break
		}
		if time.Now().After(deadline) {
			e.TimedOut = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.Delivered = min(st.Messages-baseline, accepted)
	var arr Arrivals
	if err := getJSON(ctx, arrivalsURL(o.SinkStats, run), &arr); err != nil {
		return nil, err
	}
	acks := make(map[int64]int64, accepted)
	for _, w := range workers {
		for _, a := range w.acks {
			acks[a.seq] = a.at
		}
	}
	var hist histogram
	var last int64
	for i, seq := range arr.Seq {
		at, ok := acks[seq]
		if !ok || i >= len(arr.UnixNano) {
			continue
		}
		e.Matched++
		hist.record(time.Duration(arr.UnixNano[i] - at))
		last = max(last, arr.UnixNano[i])
	}
	end := st.LastAt
	if e.Matched > 0 {
		end = time.Unix(0, last)
		e.Delivered = max(e.Delivered, e.Matched)
	}
	if s := end.Sub(firstAt).Seconds(); s > 0 && e.Delivered > 0 {
		e.Seconds = s
		e.MessagesPerSecond = float64(e.Delivered) / s
	}
	l := hist.latency()
	e.ArrivalP50Ms, e.ArrivalP90Ms, e.ArrivalP99Ms, e.ArrivalMaxMs = l.P50, l.P90, l.P99, l.Max
	return e, nil
}

// WriteTable prints the result for people.
func (r *Result) WriteTable(w io.Writer) {
	mode := "closed loop"
	if r.Rate > 0 {
		mode = fmt.Sprintf("open loop at %.0f msgs/s", r.Rate)
	}
	perConn := "all"
	if r.PerConn > 0 {
		perConn = fmt.Sprint(r.PerConn)
	}
	pipe := ""
	if r.Pipelining {
		pipe = ", pipelining"
	}
	fmt.Fprintf(w, "postern bench → %s: %d sessions, %d B, %s messages per connection, %s (%s%s)\n\n",
		r.Addr, r.Sessions, r.Size, perConn, mode, r.Client, pipe)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-26s "+format+"\n", append([]any{k}, a...)...) }
	row("sent", "%d", r.Sent)
	row("accepted", "%d", r.Accepted)
	var refused int64
	codes := make([]string, 0, len(r.Refused))
	for k, v := range r.Refused {
		refused += v
		codes = append(codes, k)
	}
	sort.Strings(codes)
	row("refused", "%d", refused)
	for _, c := range codes {
		row("  "+c, "%d", r.Refused[c])
	}
	row("errors", "%d", r.Errors)
	if r.FirstError != "" {
		row("  first error", "%s", r.FirstError)
	}
	row("seconds", "%.2f", r.Seconds)
	row("msgs/s", "%.0f", r.MessagesPerSecond)
	l := r.LatencyMs
	row("latency ms, from "+r.LatencyFrom, "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", l.P50, l.P90, l.P99, l.Max)
	if l := r.EndOfDataMs; l != nil {
		row("  from end of DATA", "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", l.P50, l.P90, l.P99, l.Max)
	}
	if e := r.EndToEnd; e != nil {
		timedOut := ""
		if e.TimedOut {
			timedOut = "  (timed out waiting)"
		}
		row("delivered to the sink", "%d%s", e.Delivered, timedOut)
		row("end to end msgs/s", "%.0f", e.MessagesPerSecond)
		row("250 to arrival ms", "p50 %.2f  p90 %.2f  p99 %.2f  max %.2f", e.ArrivalP50Ms, e.ArrivalP90Ms, e.ArrivalP99Ms, e.ArrivalMaxMs)
	}
}
