package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashAndVerify(t *testing.T) {
	h, err := Hash("correct horse battery")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("Hash = %q, %v", h, err)
	}
	again, _ := Hash("correct horse battery")
	if again == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	if ok, err := Verify("correct horse battery", h); !ok || err != nil {
		t.Errorf("the right password: %v, %v", ok, err)
	}
	if ok, err := Verify("correct horse battery!", h); ok || err != nil {
		t.Errorf("a wrong password: %v, %v", ok, err)
	}
	if _, err := Hash("short"); !errors.Is(err, ErrTooShort) {
		t.Errorf("a short password: %v", err)
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=65536,t=3,p=2$c2FsdA$a2V5", "$argon2id$v=19$m=1,t=3$x$y", "$argon2id$v=19$m=65536,t=3,p=2$!!$a2V5",
		"$argon2id$v=19$m=999999999,t=3,p=2$c2FsdA$a2V5"} {
		if ok, err := Verify("x", bad); ok || !errors.Is(err, ErrMalformed) {
			t.Errorf("Verify(%q) = %v, %v", bad, ok, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5")
	f.Fuzz(func(t *testing.T, hash string) {
		if ok, _ := Verify("password", hash); ok && !strings.HasPrefix(hash, "$argon2id$") {
			t.Fatal("a hash of another kind verified")
		}
	})
}
