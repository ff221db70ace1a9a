// Package password hashes people's passwords with argon2id
// (golang.org/x/crypto) and checks them in constant time. The hash is
// kept in the PHC string format, so its parameters travel with it.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// MinLength is the shortest password accepted.
const MinLength = 12

// Parameters of new hashes: RFC 9106's second recommendation (64 MiB,
// 3 passes), with 2 lanes for a small machine.
const (
	memory  = 64 * 1024
	passes  = 3
	lanes   = 2
	saltLen = 16
	keyLen  = 32
)

// ErrTooShort refuses a password under MinLength characters.
var ErrTooShort = fmt.Errorf("a password needs at least %d characters", MinLength)

// Hash returns the argon2id hash of pw: "$argon2id$v=19$m=…,t=…,p=…$salt$key".
func Hash(pw string) (string, error) {
	if len([]rune(pw)) < MinLength {
		return "", ErrTooShort
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, passes, memory, lanes, keyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, memory, passes, lanes, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// ErrMalformed is a stored hash that cannot be read.
var ErrMalformed = errors.New("the password hash is not an argon2id PHC string")

// Verify reports whether pw matches the hash.
func Verify(pw, hash string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, ErrMalformed
	}
	var version int
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, ErrMalformed
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 || t > 100 {
		return false, ErrMalformed
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	key, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 128 {
		return false, ErrMalformed
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}
