package auth

import (
	"container/list"
	"sync"
	"time"
)

// ThrottleConfig sets when an address is shut out after failed logins.
type ThrottleConfig struct {
	// Failures within Window that shut an address out. Zero disables.
	Failures int
	// Window is how far back failures count, and how long a shut-out lasts.
	Window time.Duration
	// MaxTracked bounds the addresses whose failures are counted: past
	// it, the address that failed least recently is forgotten. Addresses
	// shut out now are kept apart and never forgotten before their
	// shut-out ends. Default 100,000 addresses.
	MaxTracked int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Throttle counts failed logins per client address. After Failures within
// Window, the address is refused outright until Window has passed since
// it was shut out, so a guesser gets a handful of tries per window, while
// clients from other addresses are unaffected.
//
// A successful login forgives nothing: the failures were made with other
// credentials, and a guesser who also holds one valid token must not be
// able to reset its count by using it between guesses.
//
// Every operation is O(1) in the number of addresses (amortised for the
// expiry of shut-outs): the counting addresses form an LRU list, and the
// shut-out ones a queue in the order their shut-outs end, which is the
// order they began, since every shut-out lasts Window.
type Throttle struct {
	cfg ThrottleConfig
	mu  sync.Mutex

	counting map[string]*list.Element // of *failures
	lru      *list.List               // most recent failure at the front

	blocked map[string]time.Time // address → end of its shut-out
	expiry  []shutOut            // shut-outs in the order they end, from expiry[head]
	head    int
}

// failures are an address's failed logins within the window, oldest
// first; never more than Failures-1 of them, since the next blocks.
type failures struct {
	addr  string
	times []time.Time
}

type shutOut struct {
	addr  string
	until time.Time
}

// NewThrottle returns a Throttle with cfg.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{
		cfg:      cfg,
		counting: make(map[string]*list.Element),
		lru:      list.New(),
		blocked:  make(map[string]time.Time),
	}
}

// Blocked reports whether addr is shut out, and until when.
func (t *Throttle) Blocked(addr string) (bool, time.Time) {
	if t == nil || t.cfg.Failures <= 0 {
		return false, time.Time{}
	}
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(now)
	if until, ok := t.blocked[addr]; ok && now.Before(until) {
		return true, until
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
	t.expire(now)
	if until, ok := t.blocked[addr]; ok && now.Before(until) {
		return true
	}
	var f *failures
	if el, ok := t.counting[addr]; ok {
		t.lru.MoveToFront(el)
		f = el.Value.(*failures)
	} else {
		if t.lru.Len() >= t.cfg.MaxTracked {
			oldest := t.lru.Back()
			t.lru.Remove(oldest)
			delete(t.counting, oldest.Value.(*failures).addr)
		}
		f = &failures{addr: addr, times: make([]time.Time, 0, t.cfg.Failures)}
		t.counting[addr] = t.lru.PushFront(f)
	}
	cutoff := now.Add(-t.cfg.Window)
	kept := f.times[:0]
	for _, at := range f.times {
		if at.After(cutoff) {
			kept = append(kept, at)
		}
	}
	f.times = append(kept, now)
	if len(f.times) < t.cfg.Failures {
		return false
	}
	t.lru.Remove(t.counting[addr])
	delete(t.counting, addr)
	until := now.Add(t.cfg.Window)
	t.blocked[addr] = until
	t.expiry = append(t.expiry, shutOut{addr, until})
	return true
}

// expire ends the shut-outs that are over, oldest first.
func (t *Throttle) expire(now time.Time) {
	for t.head < len(t.expiry) && !now.Before(t.expiry[t.head].until) {
		s := t.expiry[t.head]
		if t.blocked[s.addr].Equal(s.until) {
			delete(t.blocked, s.addr)
		}
		t.expiry[t.head] = shutOut{}
		t.head++
	}
	// Reclaim the consumed prefix once it is the larger part.
	if t.head > 1024 && t.head*2 > len(t.expiry) {
		t.expiry = append(t.expiry[:0], t.expiry[t.head:]...)
		t.head = 0
	}
}
