package dkim_test

import (
	"errors"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/internal/testutil/dkimtest"
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

// FuzzSign: whatever a message's header and body hold, Sign never panics,
// and a message it signs verifies with go-msgauth's verifier, both
// signatures. Only messages as the intake stores them are checked: header
// fields, then a blank line (the intake writes one after the fields it
// read), then the body; where the header section would end early at a
// line that is no field, the intake would have moved that line into the
// body, and go-msgauth reads such a message otherwise. Nor does a stored
// message hold a CR but in CRLF: the intake refuses one in the header and
// turns one in the body into CRLF.
func FuzzSign(f *testing.F) {
	keys := dkimtest.Keys(f)
	signer, err := dkim.NewSigner(keys.Domain, keys.List())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{
		{"From: a@example.com\r\nSubject: hi\r\n", "body\r\n"},
		{"From: a@example.com\r\nTo: b@example.net,\r\n\tc@example.net\r\n", "  lead \t trail \r\n\r\n\r\n"},
		{"from:a@example.com\r\nsubject:\t x  y \r\nSubject: again\r\n", "no end"},
		{"From: a@example.com\r\n", ""},
		{"From: a@example.com\nSubject: bare\n", "one\ntwo \n\n"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, header, body string) {
		msg := header + "\r\n" + body
		if message.Split([]byte(msg)).MissingSeparator || strings.Count(msg, "\r") != strings.Count(msg, "\r\n") {
			return
		}
		fields, err := signer.Sign([]byte(msg))
		if err != nil {
			return // no From field
		}
		vs, err := msgdkim.VerifyWithOptions(strings.NewReader(string(fields)+msg), &msgdkim.VerifyOptions{LookupTXT: dkimtest.Records(keys)})
		if err != nil {
			return
		}
		for _, v := range vs {
			if v.Err != nil && !errors.Is(v.Err, msgdkim.ErrTooManySignatures) {
				t.Fatalf("signature of %q does not verify: %v\n%s", msg, v.Err, fields)
			}
		}
	})
}
