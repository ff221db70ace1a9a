package relay_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// e2e is a whole Postern on loopback (see stack): the relay's tests add
// their own helpers to it (faults_test.go).
type e2e struct{ *stack.Stack }

func newE2E(t testing.TB, storeOptions ...bolt.Options) *e2e {
	t.Helper()
	// The benchmarks' 32 sessions all come from 127.0.0.1.
	opts := stack.Options{MaxSessionsPerAddress: 100}
	if len(storeOptions) > 0 {
		opts.Store = storeOptions[0]
	}
	return &e2e{stack.New(t, opts)}
}

// eventTypes lists the event types of one recipient, in order.
func eventTypes(evs []store.Event, rcpt string) []string {
	var out []string
	for _, ev := range evs {
		if strings.EqualFold(ev.Recipient, rcpt) {
			out = append(out, ev.Type)
		}
	}
	return out
}

// header returns the header section of a message.
func header(data []byte) string {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return string(data[:i+2])
	}
	return string(data)
}

// testBody is a message as an application sends it.
func testBody(from, to, subject string) string {
	return "From: App <" + from + ">\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nBcc: hidden@example.net\r\nX-PM-Tag: welcome\r\nX-PM-Metadata-client: 42\r\n\r\nHello.\r\n"
}
