package bench

import (
	"context"
	"net"
	"testing"
)

// BenchmarkSink measures the sink with the bench's own client: 32
// sessions, 2 KB messages, all on one connection each, the textproto
// client (PIPELINING) against go-smtp's.
//
//	go test -run '^$' -bench BenchmarkSink -benchtime 100000x ./internal/bench/
func BenchmarkSink(b *testing.B) {
	for _, client := range []string{"textproto", "gosmtp"} {
		b.Run("client="+client, func(b *testing.B) {
			sink := NewSink(SinkOptions{})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go sink.Serve(ln)
			defer sink.Close()
			b.ResetTimer()
			res, err := Run(context.Background(), Options{Addr: ln.Addr().String(), Sessions: 32, Messages: int64(b.N), Client: client})
			if err != nil {
				b.Fatal(err)
			}
			if res.Accepted != int64(b.N) {
				b.Fatalf("accepted %d of %d: %+v", res.Accepted, b.N, res)
			}
			b.ReportMetric(res.MessagesPerSecond, "msgs/s")
			b.ReportMetric(res.LatencyMs.P99, "p99-ms")
		})
	}
}
