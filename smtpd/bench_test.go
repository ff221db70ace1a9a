package smtpd

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/store/bolt"
)

// BenchmarkAccept measures accepted messages per second: 2 KB messages
// over loopback, AUTH PLAIN once per connection, many messages per
// connection, each one committed to disk (fsync) before its 250. The
// pipelined variants send MAIL, RCPT and DATA in one write, as Postfix,
// Nodemailer and other PIPELINING clients do; the others wait for each
// reply, as net/smtp and smtplib do.
//
//	go test -run '^$' -bench BenchmarkAccept -benchtime 5s ./smtpd/
func BenchmarkAccept(b *testing.B) {
	msg := "From: app@example.com\r\nTo: alice@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 76)+"\r\n", 2048/78)
	for _, sessions := range []int{1, 32} {
		for _, pipelined := range []bool{false, true} {
			name := fmt.Sprintf("sessions=%d", sessions)
			if pipelined {
				name += "/pipelined"
			}
			b.Run(name, func(b *testing.B) { benchmarkAccept(b, sessions, pipelined, msg) })
		}
	}
}

func benchmarkAccept(b *testing.B, sessions int, pipelined bool, msg string) {
	var commits, writes, commitNanos atomic.Int64
	ts := newTestServer(b, testOptions{storeOptions: bolt.Options{OnCommit: func(n int, took time.Duration) {
		commits.Add(1)
		writes.Add(int64(n))
		commitNanos.Add(int64(took))
	}}, mutate: func(c *Config) { c.MaxSessionsPerAddress = sessions }}) // every session is from 127.0.0.1
	clients := make([]*rawClient, sessions)
	for i := range clients {
		clients[i] = authenticated(b, ts.Addr, ts.Inst.ServerToken)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(msg)))
	commits.Store(0)
	writes.Store(0)
	commitNanos.Store(0)
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if pipelined {
					if _, err := c.conn.Write([]byte("MAIL FROM:<app@example.com>\r\nRCPT TO:<alice@example.net>\r\nDATA\r\n")); err != nil {
						b.Error(err)
						return
					}
					for _, want := range []string{"250", "250", "354"} {
						if got := c.readReply(); !strings.HasPrefix(got, want) {
							b.Errorf("got %q, want %s", got, want)
							return
						}
					}
					if _, err := c.conn.Write([]byte(msg + ".\r\n")); err != nil {
						b.Error(err)
						return
					}
					queuedID(b, c.readReply())
					continue
				}
				c.expect("250", "MAIL FROM:<app@example.com>")
				c.expect("250", "RCPT TO:<alice@example.net>")
				queuedID(b, c.sendData(msg))
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if n := commits.Load(); n > 0 {
		b.ReportMetric(float64(writes.Load())/float64(n), "msgs/commit")
		b.ReportMetric(float64(commitNanos.Load())/float64(n)/1e6, "ms/commit")
	}
}
