package unsubscribe

import (
	"strings"
	"testing"
)

func TestTokenRoundTrip(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	want := Target{ServerID: 7, Stream: "newsletter", Email: "Reader@example.net", MessageID: "m-1"}
	tok := Token(key, want)
	got, err := Parse(key, tok)
	if err != nil || got != want {
		t.Fatalf("Parse = %+v, %v", got, err)
	}
	if link := Link(key, "https://postern.example/", want); link != "<https://postern.example/unsubscribe/"+tok+">" {
		t.Errorf("Link = %s", link)
	}
	// Another key, a changed payload, a cut signature: refused.
	enc, sig, _ := strings.Cut(tok, ".")
	other := Token(key, Target{ServerID: 8, Stream: "newsletter", Email: "victim@example.net"})
	otherEnc, _, _ := strings.Cut(other, ".")
	for _, bad := range []string{Token([]byte("another key, just as long........"), want), otherEnc + "." + sig, enc + "." + sig[:10], enc, "", "..."} {
		if got, err := Parse(key, bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want ErrInvalid", bad, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	key := []byte("0123456789abcdef0123456789abcdef")
	f.Add(Token(key, Target{ServerID: 1, Stream: "s", Email: "a@b"}))
	f.Add("eyJzIjoxfQ.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := Parse(key, tok)
		if err != nil {
			return
		}
		// What verifies names a whole target, and signs again the same.
		again, err := Parse(key, Token(key, got))
		if err != nil || again != got || got.ServerID == 0 || got.Email == "" {
			t.Fatalf("%q: %+v, then %+v, %v", tok, got, again, err)
		}
	})
}
