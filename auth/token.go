// Package auth turns tokens into principals: it makes and hashes tokens,
// looks them up, runs the SASL exchanges SMTP clients use, and throttles
// addresses that keep failing.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/postern/postern/store"
)

// ErrInvalidToken means the token is unknown (or empty). Callers answer
// with one message whatever the reason, so a guess learns nothing.
var ErrInvalidToken = errors.New("auth: invalid token")

// prefixLen is how much of a token is kept in clear to tell tokens apart.
const prefixLen = 8

// NewToken returns a random token in UUID (version 4) form, as Postmark's:
// 122 random bits, nothing derived from time.
func NewToken() string {
	var b [16]byte
	// crypto/rand.Read never returns an error on supported platforms.
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Hash is what the store keeps of a token. A token carries 122 random bits,
// so a fast hash is enough: there is nothing to brute-force offline that a
// slow hash would protect. Looking tokens up by hash also makes the
// comparison independent of the token's bytes: timing can reveal at most
// where a hash sorts, which says nothing usable about any token.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// Mask shows a token the way listings do: its prefix only.
func Mask(prefix string) string { return prefix + "-****-****-****-************" }

// StoreToken makes the store record of a token.
func StoreToken(token string) store.NewToken {
	return store.NewToken{Hash: Hash(token), Token: store.Token{Prefix: token[:min(prefixLen, len(token))]}}
}

// TokenStore is what auth needs of the store.
type TokenStore interface {
	LookupToken(hash []byte) (store.Token, error)
}

// Authenticator resolves tokens to what they grant.
type Authenticator struct {
	tokens TokenStore
}

// NewAuthenticator returns an Authenticator over a token store.
func NewAuthenticator(tokens TokenStore) *Authenticator {
	return &Authenticator{tokens: tokens}
}

// Lookup returns what a token grants, or ErrInvalidToken.
func (a *Authenticator) Lookup(token string) (store.Token, error) {
	if token == "" {
		return store.Token{}, ErrInvalidToken
	}
	t, err := a.tokens.LookupToken(Hash(token))
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, ErrInvalidToken
	}
	return t, err
}

// Installation is what Init created, with the tokens in clear: the only
// time they are ever shown.
type Installation struct {
	AccountID    int64
	AccountToken string
	ServerID     int64
	ServerName   string
	ServerToken  string
	// OwnerEmail is the console's first person, Owner of the account,
	// and SignInToken their one-time token to set a password
	// (SignInPath on the console), valid SignInValid.
	OwnerEmail  string
	SignInToken string
}

// OwnerEmail is the console user Init creates.
const OwnerEmail = "owner@localhost"

// InitStore is what Init writes to.
type InitStore interface {
	store.Accounts
	store.Users
}

// DefaultServerName is the name of the server Init creates.
const DefaultServerName = "Default"

// Init creates the installation's operator account with an owner token,
// a Sandbox server named "Default" with a server token, and the console
// user OwnerEmail, Owner of the account, with a one-time sign-in token.
// It fails with store.ErrInitialized on a store that was initialised
// before.
func Init(s InitStore, now time.Time) (Installation, error) {
	accountToken, serverToken := NewToken(), NewToken()
	at := StoreToken(accountToken)
	at.Role = store.RoleOwner
	acct, srv, err := s.Initialize(store.InitParams{
		AccountName:  "Operator",
		AccountToken: at,
		Server: store.Server{
			Name:             DefaultServerName,
			Color:            "Purple",
			DeliveryType:     store.DeliverySandbox,
			SmtpApiActivated: true,
		},
		ServerToken: StoreToken(serverToken),
	}, now)
	if err != nil {
		return Installation{}, err
	}
	inst := Installation{
		AccountID:    acct.ID,
		AccountToken: accountToken,
		ServerID:     srv.ID,
		ServerName:   srv.Name,
		ServerToken:  serverToken,
		OwnerEmail:   OwnerEmail,
	}
	owner, err := s.CreateUser(store.User{Email: OwnerEmail, CreatedAt: now.UTC()})
	if err != nil {
		return inst, err
	}
	if err := s.SetMembership(store.Membership{UserID: owner.ID, AccountID: acct.ID, Role: store.UserOwner}); err != nil {
		return inst, err
	}
	inst.SignInToken, err = NewSignInToken(s, owner.ID, now)
	return inst, err
}

// CreateToken makes a token and stores it with add (its hash), trying
// again in the unlikely case its prefix is taken, and returns it: shown
// this once.
func CreateToken(add func(store.NewToken) error) (string, error) {
	for range 5 {
		tok := NewToken()
		err := add(StoreToken(tok))
		if errors.Is(err, store.ErrDuplicate) {
			continue
		}
		return tok, err
	}
	return "", errors.New("auth: no unique token prefix after 5 tries")
}
