package cpushare

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// running counts background work in progress and remembers the most at
// once.
type running struct {
	now, most atomic.Int32
}

func (r *running) start() {
	n := r.now.Add(1)
	for {
		m := r.most.Load()
		if n <= m || r.most.CompareAndSwap(m, n) {
			return
		}
	}
}

func (r *running) stop() { r.now.Add(-1) }

// work runs n pieces of background work of the given length on s, all at
// once, and returns the most that ran together.
func work(t *testing.T, s *Share, n int, length time.Duration) int32 {
	t.Helper()
	var r running
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			release, err := s.Background(context.Background())
			if err != nil {
				t.Error(err)
				return
			}
			r.start()
			time.Sleep(length)
			r.stop()
			release()
		})
	}
	wg.Wait()
	return r.most.Load()
}

func TestIdleForegroundAdmitsOnePerCPU(t *testing.T) {
	s := New(3, time.Millisecond)
	if most := work(t, s, 12, 20*time.Millisecond); most != 3 {
		t.Errorf("%d pieces of background work at once on 3 CPUs with no foreground, want 3", most)
	}
}

func TestForegroundLeavesOneBackground(t *testing.T) {
	s := New(4, time.Millisecond)
	done := s.Foreground()
	defer done()
	if most := work(t, s, 8, 5*time.Millisecond); most != 1 {
		t.Errorf("%d pieces of background work at once while the foreground runs, want 1", most)
	}
}

// Background work waits for the foreground to end, and not for its
// maximum wait when the foreground ends first.
func TestBackgroundWaitsForTheForeground(t *testing.T) {
	s := New(2, time.Hour)
	done := s.Foreground()
	admitted := make(chan struct{})
	go func() {
		release, err := s.Background(context.Background())
		if err != nil {
			t.Error(err)
		} else {
			release()
		}
		close(admitted)
	}()
	select {
	case <-admitted:
		t.Fatal("background work ran while the foreground was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	done()
	<-admitted
}

// A foreground that never ends slows background work down; it does not
// stop it.
func TestBackgroundNeverStarves(t *testing.T) {
	s := New(2, time.Millisecond)
	done := s.Foreground()
	defer done()
	for range 20 {
		release, err := s.Background(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		release()
	}
}

func TestBackgroundGivesUpWithItsContext(t *testing.T) {
	s := New(1, time.Hour)
	done := s.Foreground()
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error)
	go func() {
		_, err := s.Background(ctx)
		errs <- err
	}()
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("Background after its context ended: %v, want context.Canceled", err)
	}
	done()
	// Nothing was kept: the only CPU is free for the next one.
	release, err := s.Background(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	release()
}

func TestBusyLastsPastTheForeground(t *testing.T) {
	s := New(2, 0)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	if s.Busy() {
		t.Fatal("busy before any foreground work")
	}
	done := s.Foreground()
	if !s.Busy() {
		t.Fatal("not busy during foreground work")
	}
	done()
	now = now.Add(busyFor - time.Millisecond)
	if !s.Busy() {
		t.Fatal("not busy just after foreground work: a client's next message is on its way")
	}
	now = now.Add(2 * time.Millisecond)
	if s.Busy() {
		t.Fatalf("still busy %v after the foreground ended", busyFor+time.Millisecond)
	}
}
