package app

import (
	"log/slog"
	"runtime/debug"
)

// gcPercent is the collector's target when the operator sets none, chosen
// by measurement (docs/performance.md, "Choosing GOGC"): with Go's
// default (100) the intake's small heap was collected about 30 times a
// second and accepted 25% fewer messages; 200, 400 and 800 accepted as
// many as each other within the runs' noise, end to end too, with peak
// RSS growing from 130 to 138 and 153 MB. 200 is the least memory for
// that speed.
const gcPercent = 200

// gcHeadroom is what the memory limit allows besides message data.
const gcHeadroom = 64 << 20

// tuneGC makes the collector run less often, while a soft memory limit
// keeps the peak where the in-flight cap put it with Go's default target:
// 50 concurrent 10 MiB messages under the default 256 MiB cap peaked at
// 925-1,071 MiB RSS, about twice a live heap of under 512 MiB plus the
// store's mapped pages. The limit, 3 x max-inflight-bytes + 64 MiB (832
// MiB at the default), is above that live heap, so the collector is not
// driven to run without pause, and keeps the heap near where it was. Near
// the limit the collector runs as often as it must. GOGC or GOMEMLIMIT in
// the environment win: then nothing is changed.
func tuneGC(maxInflightBytes int64, getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		log.Info("gc: as set in the environment", "GOGC", getenv("GOGC"), "GOMEMLIMIT", getenv("GOMEMLIMIT"))
		return
	}
	limit := 3*maxInflightBytes + gcHeadroom
	debug.SetGCPercent(gcPercent)
	debug.SetMemoryLimit(limit)
	log.Info("gc: tuned", "gogc", gcPercent, "memory_limit_mib", limit>>20)
}
