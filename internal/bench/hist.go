package bench

import (
	"math/bits"
	"time"
)

// histogram counts durations in microseconds in log-linear buckets, as
// HDR histograms do: exact below 128 µs, then 64 buckets per power of two,
// so a percentile is within 1.6% of the true value. It takes a fixed
// 32 KB whatever the count; each session keeps its own, merged at the end.
type histogram struct {
	counts [64 * 64]uint64
	n      uint64
	max    uint64 // µs, exact
}

const subBits = 7 // 2^7 = 128 values below the first doubling

func bucketOf(us uint64) int {
	if us < 1<<subBits {
		return int(us)
	}
	e := bits.Len64(us) - subBits // us>>e is in [64, 128)
	return e<<(subBits-1) + int(us>>e)
}

// bucketTop is the largest value counted in bucket i.
func bucketTop(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>(subBits-1) - 1
	m := uint64(i - e<<(subBits-1))
	return (m+1)<<e - 1
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	us := uint64(d / time.Microsecond)
	i := bucketOf(us)
	if i >= len(h.counts) {
		i = len(h.counts) - 1
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, us)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at q (0 < q ≤ 1) in milliseconds: the top
// of the bucket holding the ⌈q·n⌉th smallest value, at most the maximum.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return float64(min(bucketTop(i), h.max)) / 1000
		}
	}
	return float64(h.max) / 1000
}

// Latency is a distribution's percentiles in milliseconds.
type Latency struct {
	P50, P90, P99, Max float64
}

func (h *histogram) latency() Latency {
	return Latency{P50: h.quantile(0.50), P90: h.quantile(0.90), P99: h.quantile(0.99), Max: float64(h.max) / 1000}
}
