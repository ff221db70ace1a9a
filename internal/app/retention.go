package app

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/postern/postern/console"
	"github.com/postern/postern/store"
)

// purger is what the retention runner needs of the store.
type purger interface {
	PurgeExpired(ctx context.Context, now time.Time, batch int) (int, error)
	DeleteSessionsIdleSince(t time.Time) (int, error)
}

// runRetention purges the messages past their server's retention once at
// start and then every interval, until ctx is done. Each purge works in
// small transactions (store.DefaultPurgeBatch messages), so intake goes
// on beside it; a failed purge is logged and tried again at the next
// interval. Console sessions idle past console.SessionIdle go too.
func runRetention(ctx context.Context, st purger, interval time.Duration, now func() time.Time, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		exclusively(ctx, st, "retention", log, func() {
			start := time.Now()
			n, err := st.PurgeExpired(ctx, now(), store.DefaultPurgeBatch)
			switch {
			case ctx.Err() != nil:
			case err != nil && !errors.Is(err, store.ErrClosed):
				log.Error("retention: purge failed; trying again at the next interval", "err", err, "purged", n, "next", interval.String())
			case n > 0:
				log.Info("retention: purged messages past their server's retention", "purged", n, "took", time.Since(start).Round(time.Millisecond).String())
			}
			if n, err := st.DeleteSessionsIdleSince(now().Add(-console.SessionIdle)); err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrClosed) {
				log.Error("retention: removing idle console sessions failed; trying again at the next interval", "err", err)
			} else if n > 0 {
				log.Info("retention: removed idle console sessions", "sessions", n)
			}
		})
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// exclusively runs job, named name, on this node only if no other node
// sharing the store runs it now (store.Exclusive); on a store of one node
// it just runs it.
func exclusively(ctx context.Context, st any, name string, log *slog.Logger, job func()) {
	ex, ok := st.(store.Exclusive)
	if !ok {
		job()
		return
	}
	ran, err := ex.RunExclusive(ctx, name, job)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error(name+": could not learn whether another node runs it; trying again at the next interval", "err", err)
	case !ran:
		log.Debug(name + ": another node runs it now")
	}
}
