package dkim_test

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/dkim"
)

// FuzzDKIMRecord: the parsing of published DKIM TXT records never
// panics; a record matches a key only if it carries the key's p=, and a
// key's own record always matches itself and is a DKIM record.
func FuzzDKIMRecord(f *testing.F) {
	const want = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	for _, s := range []string{
		want,
		"v=DKIM1;k=ed25519;p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvP apiMlrwIaaPcHURo=; t=y",
		"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
		"v=DKIM1; p=",
		"p=", "v=DKIM1", "v=spf1 include:_spf.example.com ~all", "", ";", "=;=;=", "p==;k==",
		"v=DKIM2; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"V=DKIM1; K=ED25519; P=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=; p=other",
		"\x00v=DKIM1\xff; p=\u00e9",
	} {
		f.Add(s, want)
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, published, key string) {
		dkim.IsRecord(published)
		if dkim.RecordMatches(published, key) {
			if !strings.Contains(published, "p") || !strings.Contains(key, "p") {
				t.Fatalf("%q matched %q without a p= tag", published, key)
			}
			if !dkim.IsRecord(published) {
				t.Fatalf("%q matches %q but is not a DKIM record", published, key)
			}
		}
	})
}
