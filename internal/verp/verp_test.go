package verp

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	key := []byte("the installation's key, 32 bytes")
	local := Local(key, 7, "01a24031-f805-7108-b31a-ede5c6519a37")
	if !strings.HasPrefix(local, "bounce+7.01a24031-f805-7108-b31a-ede5c6519a37.") || len(local) > 64 {
		t.Errorf("Local = %q (%d characters; the limit of a local part is 64)", local, len(local))
	}
	srv, msg, ok := Parse(key, strings.ToUpper(local))
	if !ok || srv != 7 || msg != "01a24031-f805-7108-b31a-ede5c6519a37" {
		t.Errorf("Parse = %d, %q, %v", srv, msg, ok)
	}
	forged := strings.Replace(local, "bounce+7.", "bounce+8.", 1)
	for _, bad := range []string{forged, Local([]byte("another key"), 7, "m"), "bounce+7.m", "dmarc+1-x", local + "x", ""} {
		if srv, msg, ok := Parse(key, bad); ok {
			t.Errorf("Parse(%q) = %d, %q", bad, srv, msg)
		}
	}
}

func FuzzParse(f *testing.F) {
	key := []byte("k")
	f.Add(Local(key, 1, "m"))
	f.Add("bounce+1.m.aaaaaaaaaaaaaaaa")
	f.Fuzz(func(t *testing.T, local string) {
		srv, msg, ok := Parse(key, local)
		if ok && Local(key, srv, msg) != strings.ToLower(local) {
			t.Fatalf("%q parses to %d %q, which make %q", local, srv, msg, Local(key, srv, msg))
		}
	})
}
