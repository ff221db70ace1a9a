// Package scripts_test runs make bench's script with tiny counts, so that
// it cannot rot: every scenario must run and land in the JSON file. It
// asserts nothing about speed.
package scripts_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil"
)

func TestBenchScriptSmoke(t *testing.T) {
	for _, tool := range []string{"bash", "python3", "curl"} {
		testutil.NeedTool(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, cleanup, err := testutil.BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()

	const messages = 20
	out := filepath.Join(dir, "results.json")
	cmd := exec.CommandContext(ctx, "bash", "bench.sh")
	cmd.Env = append(os.Environ(),
		"POSTERN_BIN="+bin.Path,
		"BENCH_OUT="+out,
		"BENCH_MESSAGES=20",
		"BENCH_SESSIONS=4",
		"BENCH_PER_CONN=3",
		"BENCH_RATE_SECONDS=1",
		"TMPDIR="+dir,
	)
	cmd.WaitDelay = 10 * time.Second
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bench.sh: %v\n%s", err, output)
	}
	t.Logf("bench.sh:\n%s", output)

	var doc struct {
		Command string
		Date    string
		Machine struct {
			Cores     int
			GoVersion string
		}
		Scenarios []struct {
			Name        string
			Description string
			Target      string
			Result      struct {
				Sessions          int
				Sent, Accepted    int
				Errors            int
				MessagesPerSecond float64
				LatencyMs         struct{ P50, P90, P99, Max float64 }
				EndToEnd          *struct {
					Delivered int
					TimedOut  bool
				}
			}
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if doc.Machine.Cores < 1 || !strings.HasPrefix(doc.Machine.GoVersion, "go") || doc.Date == "" || doc.Command != "make bench" {
		t.Errorf("machine, date or command missing: %+v %q %q", doc.Machine, doc.Date, doc.Command)
	}
	want := map[string]int{ // scenario: messages, from bench.sh's defaults for BENCH_MESSAGES=20
		"accept-2k-1":       messages / 10,
		"accept-2k":         messages,
		"accept-50k-1":      1,
		"accept-50k":        messages / 4,
		"e2e-dkim-2k":       messages / 2,
		"one-per-conn-2k":   messages / 4,
		"latency-half-load": 0, // the rate measured, for a second: at least 1
	}
	seen := map[string]bool{}
	for _, s := range doc.Scenarios {
		r := s.Result
		seen[s.Name] = true
		n, ok := want[s.Name]
		if !ok {
			t.Errorf("unexpected scenario %q", s.Name)
			continue
		}
		if n == 0 && r.Sent > 0 {
			n = r.Sent
		}
		if s.Target != "postern" || s.Description == "" {
			t.Errorf("%s: target %q, description %q", s.Name, s.Target, s.Description)
		}
		if r.Sent != n || r.Accepted != n || r.Errors != 0 {
			t.Errorf("%s: sent %d, accepted %d, errors %d; want %d accepted", s.Name, r.Sent, r.Accepted, r.Errors, n)
		}
		if r.MessagesPerSecond <= 0 || r.LatencyMs.Max <= 0 {
			t.Errorf("%s: %v msgs/s, latency %+v", s.Name, r.MessagesPerSecond, r.LatencyMs)
		}
		if s.Name == "e2e-dkim-2k" && (r.EndToEnd == nil || r.EndToEnd.Delivered != n || r.EndToEnd.TimedOut) {
			t.Errorf("%s: end to end %+v, want %d delivered to the sink", s.Name, r.EndToEnd, n)
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("scenario %s missing from %s", name, out)
		}
	}
	// Everything the script started is stopped: its work directory is
	// gone (it is removed after the processes ended).
	left, _ := filepath.Glob(filepath.Join(dir, "postern-bench.*"))
	if len(left) != 0 {
		t.Errorf("work directory left behind: %v", left)
	}
}
