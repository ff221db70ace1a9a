package store

import (
	"time"
)

// QueueStat is one server's delivery queue at a moment, for metrics.
type QueueStat struct {
	ServerID int64
	// Depth is how many messages have recipients still to deliver,
	// leased ones (being delivered now) included.
	Depth int
	// Earliest is the due time of the entry due first, zero when the
	// queue is empty. A leased entry is due when its lease ends, so an
	// Earliest in the past is mail that waits for a worker: how long it
	// has waited is what tells a queue that backs up.
	Earliest time.Time
}
