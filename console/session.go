package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/postern/postern/store"
)

const (
	sessionCookie = "postern_session"
	// signInCookie carries the sign-in form's CSRF token before there
	// is a session (a double-submit cookie): nobody signs a browser in
	// to an account of theirs from another site.
	signInCookie = "postern_signin"
	// SessionIdle is how long a session lasts without a request.
	SessionIdle = 12 * time.Hour
	// touchEvery bounds how often a request writes its session's
	// LastSeen: once a minute is precise enough for a 12-hour limit.
	touchEvery = time.Minute
)

// randomToken is 256 random bits, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sessionHash is how a session ID is kept: a copy of the store signs no
// one in.
func sessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: c.cfg.Secure,
	})
}

// startSession signs user in to account: a new session, its cookie.
func (c *Console) startSession(w http.ResponseWriter, userID, accountID int64) error {
	id, now := randomToken(), c.cfg.Now().UTC()
	s := store.Session{Hash: sessionHash(id), UserID: userID, AccountID: accountID, CSRF: randomToken(), CreatedAt: now, LastSeen: now}
	if err := c.cfg.Store.CreateSession(s); err != nil {
		return err
	}
	c.setCookie(w, sessionCookie, id, 0)
	c.setCookie(w, signInCookie, "", -1)
	return nil
}

// viewer is the person making a request and what they may do in the
// account they work in now.
type viewer struct {
	Session store.Session
	User    store.User
	Account store.Account
	Role    string           // Owner, Admin or Member of Account
	grants  map[int64]string // a Member's servers: ID → Admin or Viewer
	// Accounts are every account the person is a member of, for the
	// menu; Roles their role in each.
	Accounts []store.Account
	Roles    map[int64]string
}

// AccountWide: an Owner or Admin, who has the whole account.
func (v *viewer) AccountWide() bool { return v.Role == store.UserOwner || v.Role == store.UserAdmin }

// IsOwner: an Owner of the account.
func (v *viewer) IsOwner() bool { return v.Role == store.UserOwner }

// CSRF is the token this session's forms carry.
func (v *viewer) CSRF() string { return v.Session.CSRF }

// access is what v may do on srv: AccessAdmin, AccessViewer, or ""
// (nothing, not even know it exists).
func (v *viewer) access(srv store.Server) string {
	if srv.AccountID != v.Account.ID {
		return ""
	}
	if v.AccountWide() {
		return store.AccessAdmin
	}
	return v.grants[srv.ID]
}

// loadViewer reads the session of r and who it is; ok is false when
// there is none, it expired, or its person left the account.
func (c *Console) loadViewer(r *http.Request) (*viewer, bool, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, false, nil
	}
	hash := sessionHash(ck.Value)
	s, err := c.cfg.Store.Session(hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	now := c.cfg.Now().UTC()
	if now.Sub(s.LastSeen) > SessionIdle {
		return nil, false, c.cfg.Store.DeleteSession(hash)
	}
	v := &viewer{Session: s, Roles: map[int64]string{}}
	if v.User, err = c.cfg.Store.User(s.UserID); errors.Is(err, store.ErrNotFound) {
		return nil, false, c.cfg.Store.DeleteSession(hash)
	} else if err != nil {
		return nil, false, err
	}
	members, err := c.cfg.Store.Memberships(s.UserID)
	if err != nil {
		return nil, false, err
	}
	for _, m := range members {
		a, err := c.cfg.Store.Account(m.AccountID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		v.Accounts = append(v.Accounts, a)
		v.Roles[a.ID] = m.Role
		if m.AccountID == s.AccountID {
			v.Account, v.Role = a, m.Role
			v.grants = map[int64]string{}
			for _, g := range m.Servers {
				v.grants[g.ServerID] = g.Access
			}
		}
	}
	if v.Role == "" {
		// Removed from the account this session worked in: signed out.
		return nil, false, c.cfg.Store.DeleteSession(hash)
	}
	slices.SortFunc(v.Accounts, func(a, b store.Account) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	if now.Sub(s.LastSeen) > touchEvery {
		v.Session.LastSeen = now
		if err := c.cfg.Store.UpdateSession(v.Session); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, false, err
		}
	}
	return v, true, nil
}

type handler func(w http.ResponseWriter, r *http.Request, v *viewer) error

// signedIn serves h to a signed-in person, and sends anyone else to the
// sign-in page. A request that changes something must carry the
// session's CSRF token; a person whose account requires a second factor
// sets one up before anything else.
func (c *Console) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok, err := c.loadViewer(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if !ok {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				target := "/signin"
				if r.URL.Path != "/" {
					target += "?next=" + urlEscape(r.URL.RequestURI())
				}
				redirect(w, r, target)
				return
			}
			c.fail(w, r, nil, forbidden("You are signed out; sign in and try again."))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !sameToken(v.Session.CSRF, r.PostFormValue("csrf")) {
			c.fail(w, r, v, forbidden("This form has expired or did not come from the console. Reload the page and try again."))
			return
		}
		if v.Account.RequireTwoFactor && v.User.TOTPSecret == "" && !strings.HasPrefix(r.URL.Path, "/twofactor") && r.URL.Path != "/signout" {
			redirect(w, r, "/twofactor")
			return
		}
		if err := h(w, r, v); err != nil {
			c.fail(w, r, v, err)
		}
	}
}

// clientAddr is the address a request came from, for the sign-in
// throttle.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
