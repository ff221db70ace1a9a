package bolt

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"

	"github.com/postern/postern/store"
)

// decodedCache keeps records decoded from their JSON. The SMTP intake reads
// its server at every MAIL (limits) and every stored message (delivery
// type), and the sender's domain at every message (sender policy), and the
// relay reads the domain again to sign: decoding the JSON each time was
// about a tenth of the intake's CPU. An entry is used only while the stored
// bytes are the ones it was decoded from, so a change shows at the next
// read and nothing has to invalidate it.
type decodedCache[V any] struct {
	mu      sync.Mutex
	entries map[string]decodedEntry[V]
	// clone copies what a caller could change in the cached value
	// through a returned copy (slices); nil when nothing could.
	clone func(V) V
}

type decodedEntry[V any] struct {
	raw []byte
	v   V
}

// decode returns raw, the value stored under key, decoded. raw may be
// memory of an open transaction: it is copied before it is kept.
func (c *decodedCache[V]) decode(key []byte, raw []byte) (V, error) {
	c.mu.Lock()
	e, ok := c.entries[string(key)]
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, raw) {
		var v V
		if err := json.Unmarshal(raw, &v); err != nil {
			return v, err
		}
		e = decodedEntry[V]{raw: bytes.Clone(raw), v: v}
		c.mu.Lock()
		if c.entries == nil {
			c.entries = make(map[string]decodedEntry[V])
		}
		c.entries[string(key)] = e
		c.mu.Unlock()
	}
	if c.clone != nil {
		return c.clone(e.v), nil
	}
	return e.v, nil
}

// cloneDomain copies a Domain's key lists, which a caller may change.
func cloneDomain(d store.Domain) store.Domain {
	d.Keys = slices.Clone(d.Keys)
	d.PendingKeys = slices.Clone(d.PendingKeys)
	d.RevokedKeys = slices.Clone(d.RevokedKeys)
	return d
}
