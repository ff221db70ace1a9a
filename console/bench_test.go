package console_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/console"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

// BenchmarkServersPage renders the servers page of an account with 1,000
// servers holding 1M messages over the last 30 days
// (POSTERN_BENCH_MESSAGES sets another number), as its Owner:
//
//	go test -run '^$' -bench BenchmarkServersPage -benchtime 20x ./console/
func BenchmarkServersPage(b *testing.B) {
	const servers = 1000
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("POSTERN_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	st, err := bolt.Open(filepath.Join(b.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	inst, err := auth.Init(st, now)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]int64, servers)
	for i := range ids {
		srv, err := st.CreateServer(store.NewServer(store.Server{AccountID: inst.AccountID, Name: fmt.Sprintf("client-%04d", i),
			Color: store.ServerColors[i%len(store.ServerColors)], Pinned: i%100 == 0, DeliveryType: store.DeliverySandbox}, now),
			auth.StoreToken(auth.NewToken()), now)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = srv.ID
	}
	filled := time.Now()
	const workers = 64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				at := now.Add(-time.Duration(i) * 30 * 24 * time.Hour / time.Duration(n))
				m := storetest.NewMessage(ids[i%servers], at)
				m.MessageID = store.MessageIDAt(at)
				if err := storetest.Enqueue(st, m, []byte("Subject: x\r\n\r\nx")); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.Logf("filled %d messages over %d servers in %s", n, servers, time.Since(filled).Round(time.Second))
	hash := "bench-owner"
	c, err := console.New(console.Config{Store: st, Throttle: auth.NewThrottle(auth.ThrottleConfig{})})
	if err != nil {
		b.Fatal(err)
	}
	owner, err := st.UserByEmail(auth.OwnerEmail)
	if err != nil {
		b.Fatal(err)
	}
	id := "benchmark-session-id-0123456789abcdefghijklm"
	if err := st.CreateSession(store.Session{Hash: console.SessionHash(id), UserID: owner.ID, AccountID: inst.AccountID, CSRF: hash, CreatedAt: now, LastSeen: now}); err != nil {
		b.Fatal(err)
	}
	// A sub-benchmark, so that the store is filled once, not for each
	// b.N the framework tries.
	b.Run("page", func(b *testing.B) {
		for range b.N {
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(&http.Cookie{Name: "postern_session", Value: id})
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), "data-server-id=") != servers+1 {
				b.Fatalf("servers page: %d, %d rows", rec.Code, strings.Count(rec.Body.String(), "data-server-id="))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/page")
	})
}
