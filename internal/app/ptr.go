package app

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// sendingIPs are the sending-ips setting's addresses.
func sendingIPs(cfg *config.Config) []netip.Addr {
	var out []netip.Addr
	for _, s := range cfg.SendingIPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// ptrCache names DMARC sources by their PTR records: each lookup waits
// at most ptrTimeout, and its answer, or its absence, is kept for
// ptrTTL, so that a page of sources costs no more than its new
// addresses.
type ptrCache struct {
	resolver *relay.Resolver
	mu       sync.Mutex
	names    map[string]ptrEntry
}

type ptrEntry struct {
	name  string
	until time.Time
}

const (
	ptrTimeout = 2 * time.Second
	ptrTTL     = 6 * time.Hour
	ptrMax     = 50000
)

func newPTRCache(r *relay.Resolver) *ptrCache {
	return &ptrCache{resolver: r, names: map[string]ptrEntry{}}
}

// nameSources looks the sources of a report up once it is filed, so
// that reading them later finds their names in the cache.
// A report of many sources has the first 200 named now, the others when
// read.
func (c *ptrCache) nameSources(r store.DMARCReport) {
	for i, row := range r.Rows {
		if i == 200 {
			return
		}
		c.name(row.SourceIP)
	}
}

// name is ip's PTR name, "" when it has none or DNS did not answer.
func (c *ptrCache) name(ip string) string {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.names[ip]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.name
	}
	ctx, cancel := context.WithTimeout(context.Background(), ptrTimeout)
	defer cancel()
	name := ""
	if names, err := c.resolver.LookupAddr(ctx, ip); err == nil && len(names) > 0 {
		name = strings.ToLower(strings.TrimSuffix(names[0], "."))
	}
	c.mu.Lock()
	if len(c.names) >= ptrMax {
		clear(c.names)
	}
	c.names[ip] = ptrEntry{name: name, until: now.Add(ptrTTL)}
	c.mu.Unlock()
	return name
}
