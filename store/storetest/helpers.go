package storetest

import (
	"errors"

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
