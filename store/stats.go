package store

import (
	"time"
)

// StatSent counts accepted messages; bounces count under their bounce
// type's name (HardBounce, SoftBounce, ...).
const StatSent = "Sent"

// MaxTagsPerDay bounds the distinct tags (with their streams) a server's
// stats keep for one day: a client that puts a new tag on every message
// would otherwise grow its stats without bound. Past it, a new tag's
// counts go under OtherTag; the messages keep their tags.
const MaxTagsPerDay = 1000

// OtherTag is the tag under which the stats count the tags of a day past
// MaxTagsPerDay.
const OtherTag = "(other)"

// StatsQuery selects a server's daily stats. Zero fields do not filter.
type StatsQuery struct {
	From, To time.Time // days (UTC), both included
	Tag      string    // exactly this tag
	Stream   string
}

// DayStats are a day's counters, summed over the tags and streams asked for.
type DayStats struct {
	Date   string // 2006-01-02
	Counts map[string]int64
}

// Bounced sums a day's bounces of every type but SMTPApiError and
// SpamComplaint, which Postmark counts apart.
func Bounced(counts map[string]int64) int64 {
	var n int64
	for name, v := range counts {
		if name != StatSent && name != "SMTPApiError" && name != "SpamComplaint" {
			n += v
		}
	}
	return n
}
