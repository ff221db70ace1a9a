package app

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// restoreGC puts the collector back as the test found it.
func restoreGC(t *testing.T) {
	percent := debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func TestTuneGC(t *testing.T) {
	restoreGC(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	none := func(string) string { return "" }

	tuneGC(256<<20, none, quiet)
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GC percent %d, want %d", got, gcPercent)
	}
	if got, want := debug.SetMemoryLimit(math.MaxInt64), int64(3*256<<20+gcHeadroom); got != want {
		t.Errorf("memory limit %d, want %d (three times the in-flight cap, plus headroom)", got, want)
	}

	// The operator's GOGC or GOMEMLIMIT wins: nothing is changed.
	for _, env := range []string{"GOGC", "GOMEMLIMIT"} {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		tuneGC(256<<20, func(k string) string {
			if k == env {
				return "200"
			}
			return ""
		}, quiet)
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("with %s set: GC percent changed to %d", env, got)
		}
		if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
			t.Errorf("with %s set: memory limit changed to %d", env, got)
		}
	}
}
