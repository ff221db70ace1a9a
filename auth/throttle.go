package auth

import (
	"sync"
	"time"
)

// ThrottleConfig sets when an address is shut out after failed logins.
type ThrottleConfig struct {
	// Failures within Window that shut an address out. Zero disables.
	Failures int
	// Window is how far back failures count, and how long a shut-out lasts.
	Window time.Duration
	// MaxTracked bounds memory: past it, entries that no longer matter are
	// dropped, then arbitrary ones. Default 100,000 addresses.
	MaxTracked int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Throttle counts failed logins per client address. After Failures within
// Window, the address is refused outright until Window has passed since
// it was shut out, so a guesser gets a handful of tries per window, while
// clients from other addresses are unaffected.
type Throttle struct {
	cfg     ThrottleConfig
	mu      sync.Mutex
	entries map[string]*throttleEntry
}

type throttleEntry struct {
	failures     []time.Time // within the window, oldest first
	blockedUntil time.Time
}

// NewThrottle returns a Throttle with cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{cfg: cfg, entries: make(map[string]*throttleEntry)}
}

// Blocked reports whether addr is shut out, and until when.
func (t *Throttle) Blocked(addr string) (bool, time.Time) {
	if t == nil || t.cfg.Failures <= 0 {
		return false, time.Time{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[addr]
	if e == nil {
		return false, time.Time{}
	}
	if t.cfg.Now().Before(e.blockedUntil) {
		return true, e.blockedUntil
	}
	return false, time.Time{}
}

// Fail records a failed login from addr and reports whether addr is now
// shut out.
func (t *Throttle) Fail(addr string) bool {
	if t == nil || t.cfg.Failures <= 0 {
		return false
	}
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[addr]
	if e == nil {
		if len(t.entries) >= t.cfg.MaxTracked {
			t.prune(now)
		}
		e = &throttleEntry{}
		t.entries[addr] = e
	}
	cutoff := now.Add(-t.cfg.Window)
	kept := e.failures[:0]
	for _, f := range e.failures {
		if f.After(cutoff) {
			kept = append(kept, f)
		}
	}
	e.failures = append(kept, now)
	if len(e.failures) >= t.cfg.Failures {
		e.blockedUntil = now.Add(t.cfg.Window)
		e.failures = e.failures[:0]
		return true
	}
	return false
}

// Succeed forgets addr's failures.
func (t *Throttle) Succeed(addr string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.entries, addr)
}

// prune drops entries that no longer matter; if that is not enough, it
// drops arbitrary ones (map order), which at worst forgets some failures.
func (t *Throttle) prune(now time.Time) {
	cutoff := now.Add(-t.cfg.Window)
	for addr, e := range t.entries {
		if now.After(e.blockedUntil) && (len(e.failures) == 0 || e.failures[len(e.failures)-1].Before(cutoff)) {
			delete(t.entries, addr)
		}
	}
	for addr := range t.entries {
		if len(t.entries) < t.cfg.MaxTracked {
			break
		}
		delete(t.entries, addr)
	}
}
