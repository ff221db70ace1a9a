package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/bench"
)

// startSinkCmd runs `postern sink` in process until the test ends and
// returns its SMTP address, its stats URL and what it printed when it
// stopped.
func startSinkCmd(t *testing.T, args ...string) (string, string, func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runSink(ctx, append([]string{"-addr", "127.0.0.1:0", "-stats-addr", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	var addr, stats string
	for addr == "" && lines.Scan() {
		if a, ok := strings.CutPrefix(lines.Text(), "sink listening on "); ok {
			addr = a
		}
		if a, ok := strings.CutPrefix(lines.Text(), "sink stats on "); ok {
			stats = "http://" + a + "/stats"
		}
	}
	if addr == "" || stats == "" {
		t.Fatalf("sink printed no addresses")
	}
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		rest <- b.String()
	}()
	stopped := false
	var summary string
	stop := func() string {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("sink: %v", err)
			}
			summary = <-rest
		}
		return summary
	}
	t.Cleanup(func() { stop() })
	return addr, stats, stop
}

// TestBenchCmdJSON: `postern bench -json` prints one object with every
// field of bench.Result (EndOfDataMs only in the open loop), refusals keyed by reply code, and EndToEnd with
// -sink-stats; `postern sink` refuses as told and prints its summary.
func TestBenchCmdJSON(t *testing.T) {
	addr, stats, stop := startSinkCmd(t, "-reply", "550 5.1.1", "-reply-fraction", "0.25")
	var out, errOut bytes.Buffer
	err := runBench(context.Background(), []string{"-addr", addr, "-sessions", "4", "-messages", "100", "-sizes", "1000,3000",
		"-sink-stats", stats, "-json", "-quiet"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	typ := reflect.TypeFor[bench.Result]()
	for i := range typ.NumField() {
		if typ.Field(i).Name == "EndOfDataMs" {
			continue // the open loop's only (TestRunOpenLoopConnectsFirst)
		}
		if _, ok := m[typ.Field(i).Name]; !ok {
			t.Errorf("no %s in %s", typ.Field(i).Name, out.String())
		}
	}
	e2e, _ := m["EndToEnd"].(map[string]any)
	for _, k := range []string{"Delivered", "Matched", "TimedOut", "Seconds", "MessagesPerSecond", "ArrivalP50Ms", "ArrivalP90Ms", "ArrivalP99Ms", "ArrivalMaxMs"} {
		if _, ok := e2e[k]; !ok {
			t.Errorf("no EndToEnd.%s in %s", k, out.String())
		}
	}
	lat, _ := m["LatencyMs"].(map[string]any)
	for _, k := range []string{"P50", "P90", "P99", "Max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("no LatencyMs.%s in %s", k, out.String())
		}
	}
	var res bench.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Sent != 100 || res.Accepted != 75 || !reflect.DeepEqual(res.Refused, map[string]int64{"550 5.1.1": 25}) ||
		res.Sessions != 4 || res.Size != 2000 || res.EndToEnd.Delivered != 75 || res.EndToEnd.Matched != 75 {
		t.Errorf("result %+v, end to end %+v", res, res.EndToEnd)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr with -quiet: %q", errOut.String())
	}

	// The table.
	out.Reset()
	if err := runBench(context.Background(), []string{"-addr", addr, "-sessions", "2", "-messages", "8", "-progress"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sent                       8\n", "550 5.1.1", "msgs/s", "p99"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table without %q:\n%s", want, out.String())
		}
	}
	summary := stop()
	if !strings.HasPrefix(summary, "sink: 81 messages, 81 recipients, ") || !strings.Contains(summary, "27 recipients refused") || !strings.Contains(summary, "msgs/s") {
		t.Errorf("sink summary %q", summary)
	}
}

func TestBenchCmdFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-messages", "5", "-duration", "1s"},
		{"-size", "100", "-sizes", "100,200"},
		{"-sizes", "100,x"},
		{"-client", "nope", "-messages", "1"},
		{"extra"},
	} {
		if err := runBench(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	for _, args := range [][]string{
		{"-reply", "250"},
		{"-reply", "550", "-reply-fraction", "2"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := runSink(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), io.Discard, io.Discard); err == nil {
			t.Errorf("sink %q: no error", args)
		}
		cancel()
	}
	if !isLoopback("127.0.0.1:25") || !isLoopback("[::1]:25") || !isLoopback("localhost:25") || isLoopback("192.0.2.1:25") {
		t.Error("isLoopback")
	}
}
