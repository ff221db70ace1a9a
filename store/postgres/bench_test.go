package postgres_test

import (
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// BenchmarkEnqueue queues 2 KB messages of a Live server from 32
// goroutines, as 32 SMTP sessions would, each waiting for its commit:
//
//	go test -run '^$' -bench Enqueue -benchtime 4000x ./store/postgres/
func BenchmarkEnqueue(b *testing.B) {
	s := open(b, pgtest.New(b), store.Caps{})
	_, srv := storetest.Init(b, s)
	raw := make([]byte, 2048)
	const sessions = 32
	per := b.N/sessions + 1
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				m := storetest.NewMessage(srv.ID, time.Now())
				if err := s.Enqueue(store.Accept(srv, *m, raw)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*sessions)/time.Since(start).Seconds(), "msgs/s")
}
