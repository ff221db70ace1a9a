package bench

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/postern/postern/internal/testutil/smtptest"
)

func TestRunAgainstSink(t *testing.T) {
	for _, client := range []string{"textproto", "gosmtp"} {
		t.Run(client, func(t *testing.T) {
			sink, addr, _ := startSink(t, SinkOptions{})
			res, err := Run(context.Background(), Options{Addr: addr, Sessions: 4, Messages: 200, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 200 || res.Accepted != 200 || len(res.Refused) != 0 || res.Errors != 0 || res.FirstError != "" {
				t.Errorf("result %+v", res)
			}
			if res.Pipelining != (client == "textproto") {
				t.Errorf("Pipelining %v with %s", res.Pipelining, client)
			}
			st := sink.Stats()
			if st.Messages != 200 || st.Recipients != 200 || st.Bytes != 200*2048 {
				t.Errorf("sink %+v, want 200 messages of 2048 bytes", st)
			}
			if res.LatencyFrom != "end of DATA" || res.LatencyMs.Max <= 0 || res.LatencyMs.P50 > res.LatencyMs.P99 || res.LatencyMs.P99 > res.LatencyMs.Max {
				t.Errorf("latency from %q: %+v", res.LatencyFrom, res.LatencyMs)
			}
		})
	}
}

// TestRunSizesAndPerConn: a size mix is used in turn, exactly; a new
// connection every few messages, with AUTH each time.
func TestRunSizesAndPerConn(t *testing.T) {
	sink, addr, _ := startSink(t, SinkOptions{})
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 3, Messages: 90, Sizes: []int{2048, 51200}, PerConn: 7, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 90 || res.Errors != 0 || res.Size != (2048+51200)/2 || !reflect.DeepEqual(res.Sizes, []int{2048, 51200}) {
		t.Errorf("result %+v", res)
	}
	if st := sink.Stats(); st.Bytes != 45*2048+45*51200 {
		t.Errorf("sink got %d bytes", st.Bytes)
	}
}

// TestRunRefusedByCode: refusals at RCPT are counted by their reply
// code, with and without pipelining, and the session carries on (RSET).
func TestRunRefusedByCode(t *testing.T) {
	for _, client := range []string{"textproto", "gosmtp"} {
		t.Run(client, func(t *testing.T) {
			reply, _ := ParseReply("550 5.1.1")
			sink, addr, _ := startSink(t, SinkOptions{Reply: reply, Fraction: 1})
			res, err := Run(context.Background(), Options{Addr: addr, Sessions: 2, Messages: 50, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 50 || res.Accepted != 0 || res.Errors != 0 || !reflect.DeepEqual(res.Refused, map[string]int64{"550 5.1.1": 50}) {
				t.Errorf("result %+v", res)
			}
			if st := sink.Stats(); st.Messages != 0 || st.Refused != 50 {
				t.Errorf("sink %+v", st)
			}

			reply, _ = ParseReply("451 4.3.0 later")
			sink, addr, _ = startSink(t, SinkOptions{Reply: reply, Fraction: 0.5})
			res, err = Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 40, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 20 || res.Errors != 0 || !reflect.DeepEqual(res.Refused, map[string]int64{"451 4.3.0": 20}) {
				t.Errorf("half refused: result %+v", res)
			}
			if st := sink.Stats(); st.Messages != 20 || st.Refused != 20 {
				t.Errorf("half refused: sink %+v", st)
			}
		})
	}
}

// TestRunErrors: nothing listening is an error per message, not a refusal.
func TestRunErrors(t *testing.T) {
	_, addr, _ := startSink(t, SinkOptions{})
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 3, StartTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 3 || res.Accepted != 0 || res.Errors != 3 || res.FirstError == "" {
		t.Errorf("STARTTLS against a sink without it: %+v", res)
	}
}

// TestRunOpenLoop: the offered load decides how many messages are sent,
// and latency is from each one's scheduled time.
func TestRunOpenLoop(t *testing.T) {
	sink, addr, _ := startSink(t, SinkOptions{})
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 4, Messages: 150, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 150 || res.Accepted != 150 || res.Rate != 1000 || res.LatencyFrom != "scheduled send" {
		t.Errorf("result %+v", res)
	}
	res, err = Run(context.Background(), Options{Addr: addr, Sessions: 4, Duration: 300 * time.Millisecond, Rate: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 150 || res.Accepted != 150 {
		t.Errorf("300ms at 500/s: %+v", res)
	}
	// New connections are opened ahead of the due time; each message is
	// still sent once.
	res, err = Run(context.Background(), Options{Addr: addr, Sessions: 3, Messages: 40, Rate: 1000, PerConn: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 40 || res.Accepted != 40 || res.Errors != 0 {
		t.Errorf("4 per connection: %+v", res)
	}
	if st := sink.Stats(); st.Messages != 340 {
		t.Errorf("sink %+v", st)
	}
}

// TestRunOpenLoopRefusedConnect: when no connection can be made, every
// message due is counted once as an error, and the run ends.
func TestRunOpenLoopRefusedConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 2, Messages: 6, Rate: 100, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 6 || res.Accepted != 0 || res.Errors != 6 {
		t.Errorf("refused connects: %+v", res)
	}
}

// TestRunDuration: a closed loop for a duration sends until it is over.
func TestRunDuration(t *testing.T) {
	_, addr, _ := startSink(t, SinkOptions{})
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 2, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Accepted != res.Sent || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
}

// TestRunSinkStats: with SinkStats, Run waits for the sink to have every
// accepted message, counting only this run's (the sink had some before),
// and matches each arrival to its 250.
func TestRunSinkStats(t *testing.T) {
	sink, addr, statsURL := startSink(t, SinkOptions{})
	if _, err := Run(context.Background(), Options{Addr: addr, Sessions: 2, Messages: 30}); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 4, Messages: 120, SinkStats: statsURL})
	if err != nil {
		t.Fatal(err)
	}
	e := res.EndToEnd
	if e == nil || e.Delivered != 120 || e.Matched != 120 || e.TimedOut || e.MessagesPerSecond <= 0 || e.Seconds <= 0 {
		t.Fatalf("end to end %+v", e)
	}
	if sink.Stats().Messages != 150 {
		t.Errorf("sink %+v", sink.Stats())
	}
}

// TestRunSinkStatsWait: Run waits for arrivals that come late, and gives
// up after Wait, saying so.
func TestRunSinkStatsWait(t *testing.T) {
	_, addr, _ := startSink(t, SinkOptions{})
	var polls atomic.Int64
	var late atomic.Int64 // the stats lag: arrivals show after a few polls
	stats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/arrivals" {
			json.NewEncoder(w).Encode(Arrivals{})
			return
		}
		n := polls.Add(1)
		st := SinkStats{Messages: 1000, LastAt: time.Now()}
		if n > 4 {
			st.Messages += late.Load()
		}
		json.NewEncoder(w).Encode(st)
	}))
	defer stats.Close()
	late.Store(10)
	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 10, SinkStats: stats.URL + "/stats", Wait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.EndToEnd; e == nil || e.Delivered != 10 || e.TimedOut || polls.Load() < 5 {
		t.Errorf("end to end %+v after %d polls", e, polls.Load())
	}
	late.Store(3)
	polls.Store(0)
	res, err = Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 10, SinkStats: stats.URL + "/stats", Wait: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if e := res.EndToEnd; e == nil || e.Delivered != 3 || !e.TimedOut {
		t.Errorf("timed out: end to end %+v", e)
	}
}

func TestRunCancel(t *testing.T) {
	_, addr, _ := startSink(t, SinkOptions{Delay: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	res, err := Run(ctx, Options{Addr: addr, Sessions: 2, Messages: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent >= 1_000_000 || res.Accepted != res.Sent || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for us := 1; us <= 10000; us++ {
		h.record(time.Duration(us) * time.Microsecond)
	}
	l := h.latency()
	for _, c := range []struct{ got, want float64 }{{l.P50, 5}, {l.P90, 9}, {l.P99, 9.9}, {l.Max, 10}} {
		if c.got < c.want || c.got > c.want*1.02 {
			t.Errorf("latency %+v: %v, want about %v", l, c.got, c.want)
		}
	}
	for i := 0; i < bucketOf(math.MaxUint64); i++ {
		if bucketOf(bucketTop(i)) != i || bucketOf(bucketTop(i)+1) != i+1 {
			t.Fatalf("bucket %d: top %d", i, bucketTop(i))
		}
	}
}

// TestRunRefusedAtEndOfData: a refusal of the content does not upset the
// next message's envelope, sent in the same write (PIPELINING), nor
// another client's, which waits for each reply.
func TestRunRefusedAtEndOfData(t *testing.T) {
	for _, client := range []string{"textproto", "gosmtp"} {
		t.Run(client, func(t *testing.T) {
			var n atomic.Int64
			peer := smtptest.New(t, smtptest.Options{Sink: true, Data: func([]byte) error {
				if n.Add(1)%2 == 0 {
					return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "no"}
				}
				return nil
			}})
			res, err := Run(context.Background(), Options{Addr: peer.Addr(), Sessions: 2, Messages: 40, Client: client})
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent != 40 || res.Accepted != 20 || res.Errors != 0 || !reflect.DeepEqual(res.Refused, map[string]int64{"554 5.6.0": 20}) {
				t.Errorf("result %+v", res)
			}
			if peer.Received() != 20 || peer.Connections() != 2 {
				t.Errorf("peer received %d on %d connections", peer.Received(), peer.Connections())
			}
		})
	}
}

// The open loop's clock starts once every session is connected: a server
// slow to greet (here by a second) delays the start, not the messages,
// whose latency from their scheduled send stays well under that second.
// Beside it, the latency from the end of DATA.
func TestRunOpenLoopConnectsFirst(t *testing.T) {
	_, sinkAddr, _ := startSink(t, SinkOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				time.Sleep(time.Second)
				up, err := net.Dial("tcp", sinkAddr)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	res, err := Run(context.Background(), Options{Addr: ln.Addr().String(), Sessions: 4, Messages: 40, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 40 {
		t.Fatalf("result %+v", res)
	}
	if res.LatencyMs.Max >= 1000 {
		t.Errorf("latency from the scheduled send up to %.0f ms: the connections' setup was counted", res.LatencyMs.Max)
	}
	if d := res.EndOfDataMs; d == nil || d.Max <= 0 || d.P99 > res.LatencyMs.Max {
		t.Errorf("latency from the end of DATA %+v, from the scheduled send %+v", d, res.LatencyMs)
	}
}
