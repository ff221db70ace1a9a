package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/postern/postern/store"
)

// SignInValid is how long a one-time sign-in link works.
const SignInValid = 24 * time.Hour

// SignInTokens keeps one-time sign-in tokens (store.Users).
type SignInTokens interface {
	AddSignInToken(t store.SignInToken) error
	TakeSignInToken(hash string, now time.Time) (store.SignInToken, error)
}

// NewSignInToken makes a one-time token for user to set a password in the
// console, valid SignInValid from now; the store keeps only its hash.
func NewSignInToken(st SignInTokens, userID int64, now time.Time) (string, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(secret)
	if err := st.AddSignInToken(store.SignInToken{Hash: SignInHash(token), UserID: userID, Expires: now.Add(SignInValid)}); err != nil {
		return "", err
	}
	return token, nil
}

// SignInHash is how a sign-in token is kept and found.
func SignInHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SignInPath is the console's page where a sign-in token is used.
const SignInPath = "/signin/link"
