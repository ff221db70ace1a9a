package storetest

import (
	"errors"
	"testing"

	"github.com/postern/postern/store"
)

// Enqueue keeps m as its server accepts it (store.Accept), as smtpd does,
// and sets m's Attachments to what Accept read from raw. A server that
// does not exist gets the backend's own error.
func Enqueue(b interface {
	store.Servers
	store.Messages
}, m *store.Message, raw []byte) error {
	srv, err := b.Server(m.ServerID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	sub := store.Accept(srv, *m, raw)
	m.Attachments = sub.Message.Attachments
	return b.Enqueue(sub)
}

// selfCheck fails t when b can check its own structure and finds a fault.
func selfCheck(t *testing.T, b store.Backend) {
	t.Helper()
	if c, ok := b.(store.Checker); ok {
		if err := c.Check(); err != nil {
			t.Fatalf("consistency check: %v", err)
		}
	}
}
