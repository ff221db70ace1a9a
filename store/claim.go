package store

import "fmt"

// ClaimCursor walks one server's due queue entries in order, inside a
// backend's claim transaction, for ClaimEntries. P is the backend's
// position in that queue.
type ClaimCursor[P any] interface {
	// Next returns the next due entry after the cursor and moves past
	// it; false when no due entry is left.
	Next() (QueueEntry, bool, error)
	// Lease stores e, the entry Next returned last, leased: e.Due is when
	// its lease ends.
	Lease(e QueueEntry) error
	// Position is where the cursor stands: past the entry Next returned
	// last.
	Position() P
	// SkipTo moves the cursor on to p, if p is further on.
	SkipTo(p P)
}

// ClaimHints keep, between claims, where the last claim's second window
// in each server's queue stopped (see ClaimSkipMax): hints a node keeps
// in memory; after a restart the scans start at the head.
type ClaimHints[P any] interface {
	Hint(serverID int64) (P, bool)
	SetHint(serverID int64, p P, ok bool)
}

// ClaimEntries decides which due entries a claim leases, rotating across
// servers: one entry from each server with due mail, then a second from
// each, and so on, so that one server's backlog cannot hold back
// another's message; each server within req.Allow, the claim within
// req.Max, and req.Take's refusals skipped within the two windows of
// ClaimSkipMax. servers are the servers with due entries, in ID order;
// open gives a cursor over one's queue. A backend runs it in its claim
// transaction.
func ClaimEntries[P any](req ClaimRequest, servers []int64, open func(serverID int64) ClaimCursor[P], hints ClaimHints[P]) ([]QueueEntry, error) {
	if req.Max <= 0 {
		return nil, nil
	}
	if req.Lease <= 0 {
		return nil, fmt.Errorf("store: claim without a lease")
	}
	type serverQueue struct {
		id      int64
		c       ClaimCursor[P]
		allowed int
		skipped int  // refused by Take in the current window
		resumed bool // the second window: from where the last claim stopped
	}
	var queues []*serverQueue
	for _, id := range servers {
		allowed := req.Max
		if req.Allow != nil {
			allowed = req.Allow(id)
		}
		if allowed > 0 {
			queues = append(queues, &serverQueue{id: id, c: open(id), allowed: allowed})
		}
	}
	// Start after the server that started last time.
	first := 0
	for i, sq := range queues {
		if sq.id > req.After {
			first = i
			break
		}
	}
	queues = append(queues[first:], queues[:first]...)
	var out []QueueEntry
	for len(out) < req.Max {
		took := false
		for _, sq := range queues {
			if len(out) >= req.Max {
				break
			}
			if sq.allowed == 0 {
				continue
			}
			var e QueueEntry
			var found bool
			for {
				var err error
				if e, found, err = sq.c.Next(); err != nil {
					return nil, err
				}
				if !found || req.Take == nil || req.Take(e, out) {
					break
				}
				if sq.skipped++; sq.skipped < ClaimSkipMax {
					continue
				}
				if !sq.resumed {
					// The head is full of refused entries: go on from
					// where the last claim stopped, if further on.
					sq.resumed, sq.skipped = true, 0
					if p, ok := hints.Hint(sq.id); ok {
						sq.c.SkipTo(p)
					}
					continue
				}
				found = false
				break
			}
			if sq.resumed {
				// The next claim's second window starts here, or at the
				// head again once this one reached the end.
				hints.SetHint(sq.id, sq.c.Position(), found || sq.skipped >= ClaimSkipMax)
			}
			if !found {
				sq.allowed = 0 // nothing more to take here
				continue
			}
			e.Due, e.Leased = req.Now.Add(req.Lease), true
			if err := sq.c.Lease(e); err != nil {
				return nil, err
			}
			out = append(out, e)
			sq.allowed--
			took = true
		}
		if !took {
			break
		}
	}
	return out, nil
}
