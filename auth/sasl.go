package auth

import (
	"errors"

	"github.com/emersion/go-sasl"

	"github.com/postern/postern/store"
)

// ErrAccountTokenOverSMTP means an account token was offered over SMTP,
// where only server tokens are accepted.
var ErrAccountTokenOverSMTP = errors.New("auth: account token offered over SMTP")

// ErrAmbiguousCredentials means username and password were two different
// valid tokens, so which server is meant cannot be told.
var ErrAmbiguousCredentials = errors.New("auth: username and password are different tokens")

// SMTPCredentials resolves an SMTP login to a server token. The token may be
// the username, the password, or both (swaks and many legacy apps fill both
// fields); a non-token in the other field is ignored.
func (a *Authenticator) SMTPCredentials(username, password string) (Credential, error) {
	var found *Credential
	for _, candidate := range [...]string{password, username} {
		if candidate == "" {
			continue
		}
		t, err := a.Lookup(candidate)
		if errors.Is(err, ErrInvalidToken) {
			continue
		}
		if err != nil {
			return Credential{}, err
		}
		if t.Kind != store.KindServer {
			return Credential{}, ErrAccountTokenOverSMTP
		}
		if found != nil && found.ServerID != t.ServerID {
			return Credential{}, ErrAmbiguousCredentials
		}
		found = &Credential{Token: t, Hash: Hash(candidate)}
	}
	if found == nil {
		return Credential{}, ErrInvalidToken
	}
	return *found, nil
}

// Credential is the server token a login presented: what it grants, and
// its hash, by which a session looks it up again later (to learn that it
// was revoked) without keeping the token itself.
type Credential struct {
	store.Token
	Hash []byte
}

// Recheck looks up again the token whose hash a Credential holds, or
// returns ErrInvalidToken when it no longer exists.
func (a *Authenticator) Recheck(hash []byte) (store.Token, error) {
	t, err := a.tokens.LookupToken(hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.Token{}, ErrInvalidToken
	}
	return t, err
}

// Mechanisms are the SASL mechanisms offered over SMTP.
var Mechanisms = []string{sasl.Plain, sasl.Login}

// CredentialsFunc checks a username and password.
type CredentialsFunc func(username, password string) error

// NewSASLServer returns the server side of mechanism mech (PLAIN or LOGIN),
// calling check with the credentials the client sends. It returns nil for
// any other mechanism.
func NewSASLServer(mech string, check CredentialsFunc) sasl.Server {
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			// The authorization identity, when given, must be the
			// username itself: a token may not act for another.
			if identity != "" && identity != username {
				return ErrInvalidToken
			}
			return check(username, password)
		})
	case sasl.Login:
		return &loginServer{check: check}
	}
	return nil
}

// loginServer is the server side of the (obsolete but ubiquitous) LOGIN
// mechanism, which go-sasl no longer provides. It accepts the username as
// an initial response (go-sasl's client sends it so) or asks for it
// (swaks, PHPMailer, most clients).
type loginServer struct {
	check    CredentialsFunc
	step     int
	username string
}

var (
	challengeUsername = []byte("Username:")
	challengePassword = []byte("Password:")
)

func (s *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		if response == nil {
			s.step = 1
			return challengeUsername, false, nil
		}
		s.username, s.step = string(response), 2
		return challengePassword, false, nil
	case 1:
		s.username, s.step = string(response), 2
		return challengePassword, false, nil
	case 2:
		s.step = 3
		return nil, true, s.check(s.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
