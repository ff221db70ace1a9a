// Package dkimtest gives tests one pair of DKIM keys, the records that
// publish them, and a check of a signed message's two signatures.
package dkimtest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/postern/postern/internal/dkim"
)

// keys are generated once per test process: RSA-2048 generation takes a
// while. The domain is written as a user might, "Example.COM.", and
// kept as example.com.
var keys = sync.OnceValues(func() (dkim.Keys, error) { return dkim.GenerateKeys("Example.COM.") })

// Keys returns the test process's keys for example.com.
func Keys(t testing.TB) dkim.Keys {
	t.Helper()
	k, err := keys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Records is a LookupTXT answering with the records of k.
func Records(k dkim.Keys) func(string) ([]string, error) {
	published := map[string]string{k.Ed25519.Host: k.Ed25519.TextValue, k.RSA.Host: k.RSA.TextValue}
	return func(name string) ([]string, error) {
		if v, ok := published[name]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
}

// Verify checks signed, which must carry two signatures, against the
// records lookup finds, and returns both verifications.
func Verify(t testing.TB, signed []byte, lookup func(string) ([]string, error)) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(signed), &msgdkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 {
		t.Fatalf("%d signatures, want 2", len(vs))
	}
	return vs
}
