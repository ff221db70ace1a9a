package store

import (
	"bytes"
	"encoding/json"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// serverCache keeps each server record decoded. The SMTP intake reads its
// server at every MAIL (limits) and every stored message (delivery type),
// and decoding the JSON was about a tenth of the intake's CPU. An entry is
// used only while the stored bytes are the ones it was decoded from, so a
// change to a server is seen at once and nothing has to invalidate it.
type serverCache struct {
	mu      sync.Mutex
	entries map[int64]serverCacheEntry
}

type serverCacheEntry struct {
	raw []byte
	srv Server
}

// get returns server id as stored in tx.
func (c *serverCache) get(tx *bolt.Tx, id int64) (Server, error) {
	raw := tx.Bucket(bucketServers).Get(itob(id))
	if raw == nil {
		return Server{}, ErrNotFound
	}
	c.mu.Lock()
	e, ok := c.entries[id]
	c.mu.Unlock()
	if ok && bytes.Equal(e.raw, raw) {
		return e.srv, nil
	}
	var srv Server
	if err := json.Unmarshal(raw, &srv); err != nil {
		return Server{}, err
	}
	// raw lives in bbolt's memory map only while tx is open.
	e = serverCacheEntry{raw: bytes.Clone(raw), srv: srv}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = make(map[int64]serverCacheEntry)
	}
	c.entries[id] = e
	c.mu.Unlock()
	return srv, nil
}
