package console

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/password"
	"github.com/postern/postern/store"
)

// dummyHash is verified against when no user has the email, so that a
// wrong email takes as long as a wrong password; made at the first such
// sign-in, not when the program starts.
var dummyHash = sync.OnceValue(func() string {
	h, _ := password.Hash("postern-no-such-user-password")
	return h
})

func urlEscape(s string) string { return url.QueryEscape(s) }

// safeNext is where to go after signing in: a path of the console only,
// never another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}

type signInForm struct {
	CSRF, Email, Next, Error string
}

func (c *Console) registerSignIn() {
	c.mux.HandleFunc("GET /signin", c.signInPage)
	c.mux.HandleFunc("POST /signin", c.signIn)
	c.mux.HandleFunc("POST /signout", c.signedIn(c.signOut))
	c.mux.HandleFunc("GET "+auth.SignInPath, c.linkPage)
	c.mux.HandleFunc("POST "+auth.SignInPath, c.useLink)
	c.mux.HandleFunc("GET /twofactor", c.signedIn(c.twoFactorPage))
	c.mux.HandleFunc("POST /twofactor", c.signedIn(c.setTwoFactor))
}

// signInCSRF returns the sign-in form's token, setting its cookie when
// there is none.
func (c *Console) signInCSRF(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(signInCookie); err == nil && len(ck.Value) == 43 {
		return ck.Value
	}
	t := randomToken()
	c.setCookie(w, signInCookie, t, 3600)
	return t
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok, err := c.loadViewer(r); err == nil && ok {
		redirect(w, r, safeNext(r.URL.Query().Get("next")))
		return
	}
	c.render(w, nil, http.StatusOK, "signin", "Sign in", signInForm{CSRF: c.signInCSRF(w, r), Next: safeNext(r.URL.Query().Get("next"))})
}

// errSignIn is the one answer to a wrong email, password or code: it
// says not which.
const errSignIn = "The email, password or code is wrong."

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	form := signInForm{Email: strings.TrimSpace(r.PostFormValue("email")), Next: safeNext(r.PostFormValue("next"))}
	ck, err := r.Cookie(signInCookie)
	if err != nil || !sameToken(ck.Value, r.PostFormValue("csrf")) {
		form.CSRF, form.Error = c.signInCSRF(w, r), "This form has expired; try again."
		c.render(w, nil, http.StatusForbidden, "signin", "Sign in", form)
		return
	}
	form.CSRF = ck.Value
	emailKey, addrKey := "console-email:"+strings.ToLower(form.Email), "console-addr:"+clientAddr(r)
	for _, k := range []string{emailKey, addrKey} {
		if blocked, until := c.cfg.Throttle.Blocked(k); blocked {
			form.Error = "Too many failed sign-ins. Try again after " + until.UTC().Format("15:04:05 UTC") + "."
			c.render(w, nil, http.StatusTooManyRequests, "signin", "Sign in", form)
			return
		}
	}
	u, accountID, err := c.checkSignIn(form.Email, r.PostFormValue("password"), r.PostFormValue("code"))
	if errors.Is(err, errWrongCredentials) {
		c.cfg.Throttle.Fail(emailKey)
		c.cfg.Throttle.Fail(addrKey)
		c.cfg.Logger.Info("console: sign-in failed", "addr", clientAddr(r))
		form.Error = errSignIn
		c.render(w, nil, http.StatusUnauthorized, "signin", "Sign in", form)
		return
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	if err := c.startSession(w, u.ID, accountID); err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.cfg.Logger.Info("console: signed in", "user", u.ID, "account", accountID, "addr", clientAddr(r))
	redirect(w, r, form.Next)
}

var errWrongCredentials = errors.New("wrong credentials")

// checkSignIn checks an email, password and code, and picks the account
// to work in: the first the person is a member of.
func (c *Console) checkSignIn(email, pw, code string) (store.User, int64, error) {
	u, err := c.cfg.Store.UserByEmail(email)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.PasswordHash == "") {
		_, _ = password.Verify(pw, dummyHash())
		return u, 0, errWrongCredentials
	}
	if err != nil {
		return u, 0, err
	}
	if ok, err := password.Verify(pw, u.PasswordHash); err != nil || !ok {
		return u, 0, errWrongCredentials
	}
	if u.TOTPSecret != "" && !c.validCode(code, u.TOTPSecret) {
		return u, 0, errWrongCredentials
	}
	members, err := c.cfg.Store.Memberships(u.ID)
	if err != nil {
		return u, 0, err
	}
	if len(members) == 0 {
		return u, 0, errWrongCredentials
	}
	return u, members[0].AccountID, nil
}

// validCode checks a TOTP code (RFC 6238: 30-second steps, 6 digits,
// one step of clock skew either way).
func (c *Console) validCode(code, secret string) bool {
	ok, err := totp.ValidateCustom(strings.TrimSpace(code), secret, c.cfg.Now(), totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	return err == nil && ok
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := c.cfg.Store.DeleteSession(v.Session.Hash); err != nil {
		return err
	}
	c.setCookie(w, sessionCookie, "", -1)
	redirect(w, r, "/signin")
	return nil
}

type linkForm struct {
	Token, Error string
}

// linkPage shows the form to set a password from a one-time link. The
// link is used only when the form is sent: a mail scanner that fetches
// it uses nothing.
func (c *Console) linkPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, nil, http.StatusOK, "setpassword", "Set your password", linkForm{Token: r.URL.Query().Get("token")})
}

func (c *Console) useLink(w http.ResponseWriter, r *http.Request) {
	form := linkForm{Token: r.PostFormValue("token")}
	pw := r.PostFormValue("password")
	if pw != r.PostFormValue("password2") {
		form.Error = "The two passwords differ."
		c.render(w, nil, http.StatusUnprocessableEntity, "setpassword", "Set your password", form)
		return
	}
	hash, err := password.Hash(pw)
	if err != nil {
		form.Error = sentence(err) + "."
		c.render(w, nil, http.StatusUnprocessableEntity, "setpassword", "Set your password", form)
		return
	}
	t, err := c.cfg.Store.TakeSignInToken(auth.SignInHash(form.Token), c.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		c.render(w, nil, http.StatusNotFound, "error", "Link used or expired", "This link was used already or has expired. Ask an Owner or Admin of your account for a new one.")
		return
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	u, err := c.cfg.Store.User(t.UserID)
	if err == nil {
		u.PasswordHash = hash
		err = c.setPassword(u)
	}
	var accountID int64
	if err == nil {
		var members []store.Membership
		members, err = c.cfg.Store.Memberships(u.ID)
		if err == nil && len(members) == 0 {
			err = errNotFound
		} else if err == nil {
			accountID = members[0].AccountID
		}
	}
	if err == nil {
		err = c.startSession(w, u.ID, accountID)
	}
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	c.cfg.Logger.Info("console: password set from a sign-in link", "user", u.ID)
	redirect(w, r, "/")
}

// setPassword stores u with its new password and ends every session
// it had.
func (c *Console) setPassword(u store.User) error {
	if err := c.cfg.Store.UpdateUser(u); err != nil {
		return err
	}
	_, err := c.cfg.Store.DeleteUserSessions(u.ID)
	return err
}

type twoFactorForm struct {
	Secret, URL, Error string
	QR                 template.URL
	Enabled, Required  bool
}

func (c *Console) twoFactorPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	form := twoFactorForm{Enabled: v.User.TOTPSecret != "", Required: v.Account.RequireTwoFactor}
	if !form.Enabled {
		key, err := totp.Generate(totp.GenerateOpts{Issuer: "Postern", AccountName: v.User.Email})
		if err != nil {
			return err
		}
		form.Secret, form.URL = key.Secret(), key.URL()
		qr, err := qrDataURL(key)
		if err != nil {
			return err
		}
		form.QR = template.URL(qr) // a PNG made here, not input
	}
	c.render(w, v, http.StatusOK, "twofactor", "Two-factor sign-in", form)
	return nil
}

// setTwoFactor turns the second factor on (the secret shown, confirmed
// by a code from it) or off (not while the account requires it).
func (c *Console) setTwoFactor(w http.ResponseWriter, r *http.Request, v *viewer) error {
	u := v.User
	if r.PostFormValue("action") == "disable" {
		if v.Account.RequireTwoFactor {
			return forbidden("This account requires a second factor; it cannot be turned off.")
		}
		u.TOTPSecret = ""
	} else {
		secret := strings.TrimSpace(r.PostFormValue("secret"))
		if secret == "" || !c.validCode(r.PostFormValue("code"), secret) {
			return invalid("The code does not match the secret. Check your device's clock and try the next code.")
		}
		u.TOTPSecret = secret
	}
	if err := c.cfg.Store.UpdateUser(u); err != nil {
		return err
	}
	c.cfg.Logger.Info("console: second factor changed", "user", u.ID, "on", u.TOTPSecret != "")
	redirect(w, r, "/account")
	return nil
}

func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// qrDataURL draws key's otpauth URL as a QR code, a PNG in a data URL
// (the page has no other way to show an image of its own).
func qrDataURL(key *otp.Key) (string, error) {
	img, err := key.Image(200, 200)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
