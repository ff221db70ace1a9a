package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
)

// benchBody is a 2 KB text body.
var benchBody = strings.Repeat(strings.Repeat("x", 76)+"\n", 2048/77)

// BenchmarkIntake compares the two ways in on one Postern, in one run:
// POST /email/batch with 500 messages of 2 KB, and SMTP with 16 sessions
// sending the same messages. Every message is on disk before its answer;
// the relay does not run. The figure is messages per second.
//
//	go test -run '^$' -bench BenchmarkIntake -benchtime 20x ./api/
func BenchmarkIntake(b *testing.B) {
	e := stack.New(b, stack.Options{SenderPolicy: store.PolicyAny})
	apiURL := e.ServeAPI(nil)
	_, token := e.LiveServer("bench")
	b.Run("http-batch-500", func(b *testing.B) {
		batch := make([]map[string]any, 500)
		for i := range batch {
			batch[i] = map[string]any{"From": "app@example.com", "To": "alice@example.net", "Subject": "bench", "TextBody": benchBody}
		}
		body, _ := json.Marshal(batch)
		b.SetBytes(int64(len(body)))
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			req, _ := http.NewRequest(http.MethodPost, apiURL+"/email/batch", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Postmark-Server-Token", token)
			resp, err := httpClient.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("%v %v", resp, err)
			}
			resp.Body.Close()
		}
		b.ReportMetric(float64(b.N*500)/time.Since(start).Seconds(), "msgs/s")
	})
	// The intake allows 20 sessions per client address.
	const sessions = 16
	b.Run("smtp-16-sessions", func(b *testing.B) {
		msg := "From: app@example.com\r\nTo: alice@example.net\r\nSubject: bench\r\n\r\n" + strings.ReplaceAll(benchBody, "\n", "\r\n")
		total := int64(b.N * 500)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		for range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := stack.DialAuth(e.SMTP, token)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				for next.Add(1) <= total {
					if _, err := stack.Submit(c, "app@example.com", []string{"alice@example.net"}, msg); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "msgs/s")
	})
}
