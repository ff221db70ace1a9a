package store

import "time"

// Marks remember that something was done once for the installation (a
// week's digest sent, an alert given), on every node.
type Marks interface {
	// Mark records key at at, and reports whether it was new: false when
	// key was marked before.
	Mark(key string, at time.Time) (bool, error)
}
