package bolt

import (
	"errors"
	"testing"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// The whole storage contract, on bbolt files in t.TempDir().
func TestContract(t *testing.T) {
	storetest.Run(t, harness{})
}

type harness struct{}

func (harness) Open(t *testing.T, caps store.Caps) store.Backend {
	s, _ := openTest(t, Options{Caps: caps})
	return s
}

// Reopen closes b and opens its file again.
func (harness) Reopen(t *testing.T, b store.Backend) store.Backend {
	t.Helper()
	s := b.(*Store)
	path := s.db.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(path, Options{Caps: s.opts.Caps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := again.Check(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("consistency check: %v", err)
		}
		again.Close()
	})
	return again
}
