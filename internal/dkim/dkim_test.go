package dkim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"regexp"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern/internal/testutil/dkimtest"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

const testMessage = "From: Alice <alice@example.com>\r\n" +
	"To: bob@example.net,\r\n" +
	"  carol@example.net\r\n" +
	"Subject: Quarterly report\r\n" +
	"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1234@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"X-Mailer: not signed\r\n" +
	"Received: from somewhere\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"\r\n" +
	"the numbers are in.  See you.\r\n"

func TestGenerateKeys(t *testing.T) {
	k := dkimtest.Keys(t)
	if k.Domain != "example.com" {
		t.Errorf("Domain = %q, want example.com", k.Domain)
	}
	tests := []struct {
		key    store.DKIMKey
		alg    string
		prefix string
	}{
		{k.Ed25519, "ed25519", "pstrn-ed-"},
		{k.RSA, "rsa", "pstrn-rsa-"},
	}
	selector := regexp.MustCompile(`^pstrn-(ed|rsa)-[0-9]{8}-[0-9a-f]{4}$`)
	for _, tt := range tests {
		key := tt.key
		if key.Algorithm != tt.alg || !strings.HasPrefix(key.Selector, tt.prefix) || !selector.MatchString(key.Selector) {
			t.Errorf("%s key: algorithm %q, selector %q", tt.alg, key.Algorithm, key.Selector)
		}
		if want := key.Selector + "._domainkey.example.com"; key.Host != want {
			t.Errorf("%s key: Host %q, want %q", tt.alg, key.Host, want)
		}
		if want := "v=DKIM1; k=" + tt.alg + "; p="; !strings.HasPrefix(key.TextValue, want) {
			t.Errorf("%s key: TextValue %q, want it to begin with %q", tt.alg, key.TextValue, want)
		}
	}
	if strings.TrimPrefix(k.Ed25519.Selector, "pstrn-ed-") != strings.TrimPrefix(k.RSA.Selector, "pstrn-rsa-") {
		t.Errorf("selectors %q and %q do not share their date and suffix", k.Ed25519.Selector, k.RSA.Selector)
	}

	edKey, err := x509.ParsePKCS8PrivateKey(k.Ed25519.PrivateKey)
	if _, ok := edKey.(ed25519.PrivateKey); err != nil || !ok {
		t.Errorf("Ed25519 private key: %T, %v", edKey, err)
	}
	rsaKey, err := x509.ParsePKCS8PrivateKey(k.RSA.PrivateKey)
	if r, ok := rsaKey.(*rsa.PrivateKey); err != nil || !ok || r.N.BitLen() != 2048 {
		t.Errorf("RSA private key: %T, %v", rsaKey, err)
	}
	// The Ed25519 record holds the bare 32-byte key (RFC 8463), not DER.
	if n := len(strings.TrimPrefix(k.Ed25519.TextValue, "v=DKIM1; k=ed25519; p=")); n != 44 {
		t.Errorf("Ed25519 p= is %d base64 characters, want 44 (32 bytes)", n)
	}
}

func sign(t *testing.T, msg string) []byte {
	t.Helper()
	s, err := newSigner(dkimtest.Keys(t))
	if err != nil {
		t.Fatal(err)
	}
	fields, err := s.Sign([]byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

func TestSignVerifiesWithBothKeys(t *testing.T) {
	k := dkimtest.Keys(t)
	fields := sign(t, testMessage)
	if n := bytes.Count(fields, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d DKIM-Signature fields, want 2:\n%s", n, fields)
	}
	// RSA on top.
	if !bytes.Contains(fields[:bytes.Index(fields[1:], []byte("DKIM-Signature:"))+1], []byte("a=rsa-sha256")) {
		t.Errorf("first signature is not RSA:\n%s", fields)
	}

	signed := append(fields, testMessage...)
	for _, v := range dkimtest.Verify(t, signed, dkimtest.Records(k)) {
		if v.Err != nil {
			t.Errorf("signature by %s: %v", v.Domain, v.Err)
		}
		if v.Domain != "example.com" {
			t.Errorf("signature domain %q", v.Domain)
		}
		want := []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "From"}
		if strings.Join(v.HeaderKeys, ":") != strings.Join(want, ":") {
			t.Errorf("signed fields %v, want %v", v.HeaderKeys, want)
		}
	}
	for _, tag := range []string{"a=ed25519-sha256", "a=rsa-sha256", "c=relaxed/relaxed", "s=" + k.Ed25519.Selector, "s=" + k.RSA.Selector} {
		if !bytes.Contains(unfold(fields), []byte(tag)) {
			t.Errorf("signature fields lack %q:\n%s", tag, fields)
		}
	}
}

// unfold joins folded header lines, so tags can be looked for whole.
func unfold(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n "), nil), []byte("\r\n\t"), nil)
}

func TestSignedMessageTampered(t *testing.T) {
	k := dkimtest.Keys(t)
	fields := sign(t, testMessage)
	tests := map[string]string{
		"body":        strings.Replace(testMessage, "numbers", "figures", 1),
		"subject":     strings.Replace(testMessage, "Quarterly", "Annual", 1),
		"second From": "From: Mallory <m@example.org>\r\n" + testMessage,
	}
	for name, tampered := range tests {
		t.Run(name, func(t *testing.T) {
			for _, v := range dkimtest.Verify(t, append(bytes.Clone(fields), tampered...), dkimtest.Records(k)) {
				if v.Err == nil {
					t.Errorf("signature with selector of domain %s still verifies", v.Domain)
				}
			}
		})
	}
	// Relaxed canonicalization forgives what servers on the way change.
	rewrapped := strings.Replace(testMessage, "in.  See", "in. See ", 1)
	rewrapped = strings.Replace(rewrapped, "Subject: Quarterly", "subject:   Quarterly", 1)
	for _, v := range dkimtest.Verify(t, append(bytes.Clone(fields), rewrapped...), dkimtest.Records(k)) {
		if v.Err != nil {
			t.Errorf("relaxed canonicalization: %v", v.Err)
		}
	}
}

// The published records work through a real DNS server and the relay's
// resolver: long RSA records split into character-strings come back whole.
func TestSignVerifiesThroughDNS(t *testing.T) {
	k := dkimtest.Keys(t)
	srv := dnstest.New(t)
	srv.SetTXT(k.Ed25519.Host, k.Ed25519.TextValue)
	srv.SetTXT(k.RSA.Host, k.RSA.TextValue)
	r := relay.NewResolver(srv.Addr())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	signed := append(sign(t, testMessage), testMessage...)
	for _, v := range dkimtest.Verify(t, signed, func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }) {
		if v.Err != nil {
			t.Errorf("signature of %s: %v", v.Domain, v.Err)
		}
	}
	if n := len(srv.Queries()); n != 2 {
		t.Errorf("%d DNS queries, want one per signature: %+v", n, srv.Queries())
	}
}

func TestSignWithoutFrom(t *testing.T) {
	s, err := newSigner(dkimtest.Keys(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign([]byte("To: bob@example.net\r\nSubject: no sender\r\n\r\nbody\r\n"))
	if err == nil {
		t.Error("signed a message without From")
	}
}

func TestNewSignerBadKey(t *testing.T) {
	k := dkimtest.Keys(t)
	k.RSA.PrivateKey = []byte("not a key")
	_, err := newSigner(k)
	if err == nil || !strings.Contains(err.Error(), k.RSA.Selector) {
		t.Errorf("NewSigner with a broken key: %v, want an error naming its selector", err)
	}
}

// BenchmarkSign signs a 2 KB message with both keys, as each message is
// signed once before delivery.
func BenchmarkSign(b *testing.B) {
	s, err := newSigner(dkimtest.Keys(b))
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n", 2048/60)
	msg := []byte(strings.SplitAfter(testMessage, "\r\n\r\n")[0] + body)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func newSigner(k dkim.Keys) (*dkim.Signer, error) { return dkim.NewSigner(k.Domain, k.List()) }

// Messages whose canonicalization has traps: folded and tab-filled
// fields, a field named twice, whitespace at line ends, runs of blank
// lines at the end, a body without a final line ending, bare LFs, and no
// body at all. Each signature verifies with go-msgauth's verifier (what
// receivers run is the RFC, and go-msgauth implements it independently of
// this signer), and the body hash is the one go-msgauth's signer computes.
func TestSignCanonicalization(t *testing.T) {
	k := dkimtest.Keys(t)
	head := "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
	for name, msg := range map[string]string{
		"plain":              testMessage,
		"folded subject":     head + "Subject: a long\r\n\tsubject  that\r\n   folds\r\n\r\nbody\r\n",
		"tabs and spaces":    head + "Subject:\t \tspaced \t out\t\r\n\r\n  lead\t\tand  trail \t\r\n\tx\r\n",
		"colon in value":     head + "Subject: re : a:b  :  c\r\n\r\nbody\r\n",
		"two To fields":      head + "To: carol@example.net\r\nSubject: two\r\n\r\nbody\r\n",
		"blank lines at end": head + "Subject: end\r\n\r\nbody\r\n\r\n\r\n \r\n\t\r\n",
		"blank lines inside": head + "Subject: in\r\n\r\nfirst\r\n\r\n\r\nlast\r\n",
		"no final CRLF":      head + "Subject: open\r\n\r\nno line ending",
		"bare LF":            head + "Subject: lf\r\n\r\none\ntwo  \nthree\n\n",
		"empty body":         head + "Subject: empty\r\n\r\n",
		"only blank lines":   head + "Subject: blank\r\n\r\n\r\n\r\n",
		"upper-case names":   "FROM: alice@example.com\r\nSUBJECT: shout\r\n\r\nBODY\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			fields := sign(t, msg)
			for _, v := range dkimtest.Verify(t, append(bytes.Clone(fields), msg...), dkimtest.Records(k)) {
				if v.Err != nil {
					t.Errorf("signature of %s: %v\n%s", v.Domain, v.Err, fields)
				}
			}
			if got, want := tag(t, fields, "bh"), goMsgauthBodyHash(t, k, msg); got != want {
				t.Errorf("bh=%s, go-msgauth's signer computes %s", got, want)
			}
		})
	}
}

// tag returns the value of a tag of the first DKIM-Signature field.
func tag(t *testing.T, fields []byte, name string) string {
	t.Helper()
	for _, part := range strings.Split(string(unfold(fields)), ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(part), "="); ok && k == name {
			return v
		}
	}
	t.Fatalf("no %s= tag in\n%s", name, fields)
	return ""
}

// goMsgauthBodyHash is the bh= go-msgauth's signer gives msg, relaxed.
func goMsgauthBodyHash(t *testing.T, k dkim.Keys, msg string) string {
	t.Helper()
	key, err := x509.ParsePKCS8PrivateKey(k.Ed25519.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	if err := msgdkim.Sign(&signed, strings.NewReader(msg), &msgdkim.SignOptions{
		Domain: "example.com", Selector: "x", Signer: key.(crypto.Signer),
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed, BodyCanonicalization: msgdkim.CanonicalizationRelaxed,
	}); err != nil {
		t.Fatal(err)
	}
	end := bytes.Index(signed.Bytes(), []byte(msg))
	return tag(t, signed.Bytes()[:end], "bh")
}
