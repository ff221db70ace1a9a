package message_test

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/message"
)

// benchMessage is the shape of the bench tool's 2 KB message.
var benchMessage = []byte("From: App <app@example.com>\r\nTo: bob@example.net\r\nSubject: Benchmark\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + strings.Repeat("Lorem ipsum dolor sit amet, consectetur.\r\n", 48))

// The attachment listing runs at intake, once per accepted message.
func BenchmarkAttachmentNames(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if names := message.AttachmentNames(benchMessage); names != nil {
			b.Fatal(names)
		}
	}
}
