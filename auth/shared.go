package auth

import (
	"time"

	"github.com/postern/postern/store"
)

// SharedThrottle is the login throttle of nodes that share a store: the
// failures of an address count on every node (store.LoginFailures), and
// a shut-out holds on every node. When the store cannot answer, the
// node's own Throttle, which sees its failures too, decides.
type SharedThrottle struct {
	cfg   ThrottleConfig
	st    store.LoginFailures
	local *Throttle
}

// NewSharedThrottle returns a throttle with cfg counting in st.
func NewSharedThrottle(cfg ThrottleConfig, st store.LoginFailures) *SharedThrottle {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SharedThrottle{cfg: cfg, st: st, local: NewThrottle(cfg)}
}

// Blocked reports whether addr is shut out, on any node, and until when.
func (t *SharedThrottle) Blocked(addr string) (bool, time.Time) {
	if t.cfg.Failures <= 0 {
		return false, time.Time{}
	}
	if blocked, until := t.local.Blocked(addr); blocked {
		return true, until
	}
	until, err := t.st.ShutOutUntil(addr, t.cfg.Now())
	if err != nil || until.IsZero() {
		return false, time.Time{}
	}
	return true, until
}

// Fail records a failed login from addr and reports whether addr is now
// shut out.
func (t *SharedThrottle) Fail(addr string) bool {
	if t.cfg.Failures <= 0 {
		return false
	}
	blockedHere := t.local.Fail(addr)
	now := t.cfg.Now()
	n, err := t.st.LoginFailed(addr, now, t.cfg.Window)
	if err != nil {
		return blockedHere
	}
	if n < t.cfg.Failures && !blockedHere {
		return false
	}
	if err := t.st.ShutOut(addr, now, now.Add(t.cfg.Window)); err != nil {
		return blockedHere
	}
	return true
}
