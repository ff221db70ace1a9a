package bolt

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/postern/postern/store"
)

func TestPing(t *testing.T) {
	var broken atomic.Bool
	disk := errors.New("disk full")
	s, _ := openTest(t, Options{BeforeCommit: func() error {
		if broken.Load() {
			return disk
		}
		return nil
	}})
	if err := s.Ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	broken.Store(true)
	if err := s.Ping(); !errors.Is(err, disk) {
		t.Fatalf("ping with failing commits: %v, want %v", err, disk)
	}
	broken.Store(false)
	if err := s.Ping(); err != nil {
		t.Fatalf("ping after recovery: %v", err)
	}
	s.Close()
	if err := s.Ping(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("ping after close: %v, want ErrClosed", err)
	}
}
