package smtpd

import (
	"errors"
	"time"

	"github.com/postern/postern/store"
)

// Limits counts what a server has sent, for its per-server limits
// (store.Server.RateLimitPerMinute and DailyQuota). The counts come from
// the store's durable data, so limits hold across restarts.
type Limits interface {
	// SentSince counts the server's messages received at or after since,
	// stopping at limit.
	SentSince(serverID int64, since time.Time, limit int) (int, error)
	// SentOn counts the server's messages received on day's UTC day.
	SentOn(serverID int64, day time.Time) (int64, error)
}

// checkLimits refuses a new message of the session's server when the
// server is at its rate limit or its daily quota. It reads the server
// afresh when the store's CredentialsGeneration has moved (every server
// edit moves it), so a limit changed over the API applies to sessions
// already open, and reads nothing otherwise.
//
// It runs at MAIL FROM, so a client over its limit learns it before it
// sends a message, and again just before the message is stored, so a
// session that waited between MAIL and DATA is held to the count of
// then. The check and the commit are not one transaction: sessions of
// one server finishing DATA at the same moment may all pass the check,
// so a limit can be overshot by at most the server's concurrent
// sessions less one. Counting inside the commit would make it exact but
// would put a scan into the store's single writer, which every server's
// intake shares.
func (s *session) checkLimits() *Error {
	srv := *s.server
	if s.cfg.Store.CredentialsGeneration() != s.generation {
		fresh, err := s.cfg.Store.Server(srv.ID)
		if errors.Is(err, store.ErrNotFound) {
			return errServerGone()
		}
		if err != nil {
			return errLimitCheck(err)
		}
		// The token is checked again at the next MAIL (recheck), which
		// is why the generation is left as it is.
		srv, s.server = fresh, &fresh
	}
	if srv.RateLimitPerMinute <= 0 && srv.DailyQuota <= 0 {
		return nil
	}
	now := s.cfg.Now().UTC()
	if limit := srv.RateLimitPerMinute; limit > 0 {
		n, err := s.cfg.Store.SentSince(srv.ID, now.Add(-time.Minute), limit)
		if err != nil {
			return errLimitCheck(err)
		}
		if n >= limit {
			s.cfg.Logger.Info("smtp limit reached", "server", srv.ID, "limit", "rate", "per_minute", limit)
			return errRateLimit(limit)
		}
	}
	if quota := srv.DailyQuota; quota > 0 {
		n, err := s.cfg.Store.SentOn(srv.ID, now)
		if err != nil {
			return errLimitCheck(err)
		}
		if n >= int64(quota) {
			s.cfg.Logger.Info("smtp limit reached", "server", srv.ID, "limit", "quota", "per_day", quota)
			return errDailyQuota(quota)
		}
	}
	return nil
}
