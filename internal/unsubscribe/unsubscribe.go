// Package unsubscribe makes and reads the links of List-Unsubscribe (RFC
// 2369, one-click per RFC 8058) that Broadcasts messages carry: each
// names a server, a stream, a recipient and the message, signed with the
// installation's key, so that nobody can unsubscribe someone else and
// nothing needs storing per message.
package unsubscribe

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// Target is what one link unsubscribes.
type Target struct {
	ServerID  int64  `json:"s"`
	Stream    string `json:"t"`
	Email     string `json:"e"`
	MessageID string `json:"m"`
}

// Path is where the API answers unsubscribe links.
const Path = "/unsubscribe/"

// Token is the signed form of t, for the link's path.
func Token(key []byte, t Target) string {
	payload, _ := json.Marshal(t)
	enc := base64.RawURLEncoding.EncodeToString(payload)
	return enc + "." + base64.RawURLEncoding.EncodeToString(sign(key, enc))
}

// Link is the List-Unsubscribe value of t for the API at base.
func Link(key []byte, base string, t Target) string {
	return "<" + strings.TrimSuffix(base, "/") + Path + Token(key, t) + ">"
}

// ErrInvalid is a link that was not made with the key.
var ErrInvalid = errors.New("the unsubscribe link is not valid")

// Parse checks a token's signature and reads its target.
func Parse(key []byte, token string) (Target, error) {
	enc, sig, ok := strings.Cut(token, ".")
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if !ok || err != nil || !hmac.Equal(got, sign(key, enc)) {
		return Target{}, ErrInvalid
	}
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return Target{}, ErrInvalid
	}
	var t Target
	if err := json.Unmarshal(payload, &t); err != nil || t.ServerID == 0 || t.Stream == "" || t.Email == "" {
		return Target{}, ErrInvalid
	}
	return t, nil
}

func sign(key []byte, enc string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(enc))
	return mac.Sum(nil)[:16]
}
