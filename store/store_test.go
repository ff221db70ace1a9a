package store_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func TestNewMessageIDIsTimeOrderedUUIDv7(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 1000; i++ {
		id := store.NewMessageID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsAny(id[19:20], "89ab") {
			t.Fatalf("%q is not a UUIDv7", id)
		}
		if seen[id] {
			t.Fatalf("%q repeated", id)
		}
		seen[id] = true
		if id[:13] < prev {
			t.Fatalf("%q sorts before the earlier %q", id, prev)
		}
		prev = id[:13]
	}
	at := time.Date(2026, 11, 27, 8, 0, 0, 500_000, time.UTC)
	if got := store.MessageIDAt(at)[:15]; got != fmt.Sprintf("%08x-%04x-7", uint64(at.UnixMilli())>>16, uint64(at.UnixMilli())&0xffff) {
		t.Fatalf("timestamp bits: %s", got)
	}
}
