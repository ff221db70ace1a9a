package relay

import (
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/store"
)

// tlsFlushInterval is how often the counts of TLS sessions go to the
// store, for the daily TLS reports. A crash loses at most this much of a
// day's counts, and costs no write per delivery.
const tlsFlushInterval = time.Minute

// tlsCounter sums TLS sessions by day, recipient domain, policy and
// failure until they are flushed to the store.
type tlsCounter struct {
	mu     sync.Mutex
	counts map[string]*store.TLSResult
}

// add counts the sessions of one delivery to domain at now.
func (c *tlsCounter) add(now time.Time, domain string, sessions []TLSSession) {
	if len(sessions) == 0 || domain == "" || strings.HasPrefix(domain, "[") {
		return // an address literal has no policy domain to report to
	}
	day := store.TLSDay(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts = map[string]*store.TLSResult{}
	}
	for _, s := range sessions {
		key := tlsCountKey(day, domain, s)
		if r := c.counts[key]; r != nil {
			r.Count++
			continue
		}
		c.counts[key] = &store.TLSResult{Day: day, Domain: domain, Policy: s.Policy, Failure: s.Failure, Count: 1}
	}
}

func tlsCountKey(day time.Time, domain string, s TLSSession) string {
	parts := []string{day.Format(time.DateOnly), domain, s.Policy.Type, strings.Join(s.Policy.Strings, "\n"), strings.Join(s.Policy.MXHosts, "\n")}
	if f := s.Failure; f != nil {
		parts = append(parts, f.ResultType, f.SendingIP, f.ReceivingMX, f.ReceivingIP, f.Reason)
	}
	return strings.Join(parts, "\x00")
}

// take returns the counts so far and starts again from zero.
func (c *tlsCounter) take() []store.TLSResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]store.TLSResult, 0, len(c.counts))
	for _, r := range c.counts {
		out = append(out, *r)
	}
	c.counts = nil
	return out
}

// countTLS counts the TLS sessions of one delivery to domain, for the
// metric and the TLS reports.
func (w *Worker) countTLS(domain string, sessions []TLSSession) {
	for _, s := range sessions {
		// A server without TLS is no failure where nothing demanded
		// TLS, though the TLS report lists it.
		result := "success"
		if s.Failure != nil && s.Policy.Type != store.TLSPolicyNotFound {
			result = "failure"
		}
		w.metrics.tls.WithLabelValues(s.Effective, result).Inc()
	}
	w.tlsCounts.add(w.cfg.Now(), domain, sessions)
}

// FlushTLS hands the counts of TLS sessions so far to the store, as
// happens every minute; counts it cannot take are kept for the next
// flush.
func (w *Worker) FlushTLS() {
	results := w.tlsCounts.take()
	if len(results) == 0 {
		return
	}
	if err := w.cfg.Store.AddTLSResults(results); err != nil {
		w.log.Warn("relay: cannot store the counts of TLS sessions; trying again later", "err", err)
		w.tlsCounts.mu.Lock()
		defer w.tlsCounts.mu.Unlock()
		if w.tlsCounts.counts == nil {
			w.tlsCounts.counts = map[string]*store.TLSResult{}
		}
		for _, r := range results {
			s := TLSSession{Policy: r.Policy, Failure: r.Failure}
			key := tlsCountKey(r.Day, r.Domain, s)
			if prev := w.tlsCounts.counts[key]; prev != nil {
				prev.Count += r.Count
			} else {
				r := r
				w.tlsCounts.counts[key] = &r
			}
		}
	}
}

// flushTLSEvery flushes the counts every tlsFlushInterval until stop is
// closed, and once more then.
func (w *Worker) flushTLSEvery(stop <-chan struct{}) {
	t := time.NewTicker(tlsFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.FlushTLS()
		case <-stop:
			w.FlushTLS()
			return
		}
	}
}
