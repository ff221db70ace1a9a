package bolt

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// BenchmarkSearchLargeServer searches one server holding 1M messages
// (POSTERN_BENCH_MESSAGES sets another number) with a filter that matches
// one message in a hundred, and reports the longest read transaction the
// search held, which is what the store's writer and its remaps wait on:
//
//	go test -run '^$' -bench BenchmarkSearchLargeServer -benchtime 5x ./store/
func BenchmarkSearchLargeServer(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("POSTERN_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	s, err := Open(filepath.Join(b.TempDir(), FileName), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	_, srv := storetest.Init(b, s)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	filled := time.Now()
	const workers = 64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				m := storetest.NewMessage(srv.ID, start.Add(time.Duration(i)*time.Second))
				m.MessageID = store.MessageIDAt(start.Add(time.Duration(i) * time.Second))
				m.Tag = "bulk"
				if i%100 == 0 {
					m.Tag = "rare"
				}
				if err := storetest.Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("filled %d messages in %s", n, time.Since(filled).Round(time.Second))
	var longest time.Duration
	s.scan.onChunk = func(d time.Duration) { longest = max(longest, d) }
	b.ResetTimer()
	for range b.N {
		res, err := s.SearchMessages(srv.ID, store.MessageQuery{Count: 50, Tag: "rare"})
		if err != nil || len(res.Messages) != 50 {
			b.Fatalf("%d messages, %v", len(res.Messages), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(longest.Microseconds())/1000, "ms-longest-read-tx")
}
