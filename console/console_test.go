package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/net/html"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

func TestSignInAndOut(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	if p := b.get("/"); p.Status != http.StatusSeeOther || p.Location != "/signin" {
		t.Fatalf("signed out, / = %d %q, want 303 to /signin", p.Status, p.Location)
	}
	p := b.signIn(f.owner.Email, "password", "wrong password!")
	if p.Status != http.StatusUnauthorized || !strings.Contains(text(p.Doc), "The email, password or code is wrong.") {
		t.Fatalf("wrong password: %d %q", p.Status, text(p.Doc))
	}
	if p := b.signIn("nobody@example.com"); p.Status != http.StatusUnauthorized || !strings.Contains(text(p.Doc), "The email, password or code is wrong.") {
		t.Fatalf("unknown email: %d %q", p.Status, text(p.Doc))
	}
	p = b.signIn(f.owner.Email)
	if p.Status != http.StatusSeeOther || p.Location != "/" {
		t.Fatalf("sign-in: %d %q", p.Status, p.Location)
	}
	var session *http.Cookie
	for _, c := range b.client.Jar.Cookies(mustURL(f.srv.URL)) {
		if c.Name == "postern_session" {
			session = c
		}
	}
	if session == nil || len(session.Value) != 43 {
		t.Fatalf("session cookie %+v, want 256 random bits", session)
	}
	// The store keeps only the hash of the session's ID.
	if _, err := f.st.Session(session.Value); err == nil {
		t.Error("the session is found under its ID in clear")
	}
	if p := b.get("/"); p.Status != http.StatusOK || byID(p.Doc, "servers") == nil {
		t.Fatalf("servers page after sign-in: %d", p.Status)
	}
	if p := b.post("/signout", nil); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", p.Status)
	}
	// The old cookie is dead even if kept.
	old := f.browser()
	old.client.Jar.SetCookies(mustURL(f.srv.URL), []*http.Cookie{{Name: "postern_session", Value: session.Value}})
	if p := old.get("/"); p.Status != http.StatusSeeOther {
		t.Fatalf("a signed-out session still works: %d", p.Status)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestSignInCookiesAndHeaders(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	b.get("/signin")
	req, _ := http.NewRequest("GET", f.srv.URL+"/signin", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	for _, c := range resp.Cookies() {
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("cookie %s: HttpOnly %v SameSite %v", c.Name, c.HttpOnly, c.SameSite)
		}
	}
	// No inline script anywhere: every page's scripts come from /static.
	owner := f.signedIn(f.owner)
	for _, path := range []string{"/", fmt.Sprintf("/servers/%d", f.alpha.ID), "/users", "/account"} {
		p := owner.get(path)
		for _, s := range findAll(p.Doc, func(n *html.Node) bool { return n.Data == "script" }) {
			if attr(s, "src") == "" || s.FirstChild != nil {
				t.Errorf("%s has an inline script", path)
			}
		}
	}
}

func TestSignInThrottled(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	for i := range 5 {
		if p := b.signIn(f.admin.Email, "password", "not the password"); p.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, p.Status)
		}
	}
	// The right password now waits too: the email is shut out.
	p := b.signIn(f.admin.Email)
	if p.Status != http.StatusTooManyRequests || !strings.Contains(text(p.Doc), "Too many failed sign-ins") {
		t.Fatalf("sixth try: %d %q", p.Status, text(p.Doc))
	}
	// So is the address, for another email.
	if p := b.signIn(f.owner.Email); p.Status != http.StatusTooManyRequests {
		t.Fatalf("another email from the same address: %d", p.Status)
	}
	f.clock.Add(5*time.Minute + time.Second)
	if p := b.signIn(f.admin.Email); p.Status != http.StatusSeeOther {
		t.Fatalf("after the window: %d %q", p.Status, text(p.Doc))
	}
}

func TestCSRFRequired(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn(f.owner)
	p := b.post(fmt.Sprintf("/servers/%d/pin", f.alpha.ID), url.Values{"csrf": {""}, "pinned": {"true"}})
	if p.Status != http.StatusForbidden {
		t.Fatalf("pin without CSRF token: %d", p.Status)
	}
	if srv, _ := f.st.Server(f.alpha.ID); srv.Pinned {
		t.Fatal("pinned without a CSRF token")
	}
	// The sign-in form has its own.
	req, _ := http.NewRequest("POST", f.srv.URL+"/signin", strings.NewReader(url.Values{"email": {f.owner.Email}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := f.browser().do(req); p.Status != http.StatusForbidden {
		t.Fatalf("sign-in without its token: %d", p.Status)
	}
}

func TestSessionExpiresWhenIdle(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn(f.owner)
	f.clock.Add(11 * time.Hour)
	if p := b.get("/"); p.Status != http.StatusOK {
		t.Fatalf("after 11 hours: %d", p.Status)
	}
	f.clock.Add(11 * time.Hour) // 11 hours since the last request
	if p := b.get("/"); p.Status != http.StatusOK {
		t.Fatalf("11 hours after the last request: %d", p.Status)
	}
	f.clock.Add(12*time.Hour + time.Minute)
	if p := b.get("/"); p.Status != http.StatusSeeOther {
		t.Fatalf("12 hours idle: %d, want the sign-in page", p.Status)
	}
}

func TestSessionEndsOnRemovalAndPasswordChange(t *testing.T) {
	f := newFixture(t)
	viewer := f.signedIn(f.viewer)
	if err := f.st.RemoveMembership(f.accountA, f.viewer.ID); err != nil {
		t.Fatal(err)
	}
	if p := viewer.get("/"); p.Status != http.StatusSeeOther {
		t.Fatalf("removed from the account: %d", p.Status)
	}
	// A password changed from the Account page: this browser stays
	// signed in, the person's other sessions end.
	owner, elsewhere := f.signedIn(f.owner), f.signedIn(f.owner)
	form := url.Values{"current": {testPassword}, "password": {"the new owner password"}, "password2": {"the new owner password"}}
	if p := owner.post("/account/password", form); p.Status != http.StatusSeeOther {
		t.Fatalf("change password: %d %s", p.Status, text(p.Doc))
	}
	if p := owner.get("/"); p.Status != http.StatusOK {
		t.Fatalf("the browser that changed the password: %d", p.Status)
	}
	if p := elsewhere.get("/"); p.Status != http.StatusSeeOther {
		t.Fatalf("another session after the password change: %d", p.Status)
	}

	admin := f.signedIn(f.admin)
	tok, err := auth.NewSignInToken(f.st, f.admin.ID, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	p := f.browser().post(auth.SignInPath, url.Values{"csrf": {"x"}, "token": {tok}, "password": {"a new password 123"}, "password2": {"a new password 123"}})
	if p.Status != http.StatusSeeOther {
		t.Fatalf("set password: %d %s", p.Status, text(p.Doc))
	}
	if p := admin.get("/"); p.Status != http.StatusSeeOther {
		t.Fatalf("session from before the password change: %d", p.Status)
	}
}

func TestSignInLinkSetsPassword(t *testing.T) {
	f := newFixture(t)
	b := f.browser()
	// The installation's owner has no password: only its link.
	if p := b.signIn(auth.OwnerEmail); p.Status != http.StatusUnauthorized {
		t.Fatalf("owner@localhost without a password signed in: %d", p.Status)
	}
	link := auth.SignInPath + "?token=" + f.inst.SignInToken
	p := b.get(link)
	if p.Status != http.StatusOK || byID(p.Doc, "password2") == nil {
		t.Fatalf("link page: %d", p.Status)
	}
	// Fetching the link (a mail scanner) uses nothing.
	form := url.Values{"token": {f.inst.SignInToken}, "password": {"short"}, "password2": {"short"}}
	if p := b.post(auth.SignInPath, form); p.Status != http.StatusUnprocessableEntity || !strings.Contains(text(p.Doc), "12 characters") {
		t.Fatalf("short password: %d %q", p.Status, text(p.Doc))
	}
	form.Set("password", "twelve chars or more")
	form.Set("password2", "twelve chars or more")
	if p := b.post(auth.SignInPath, form); p.Status != http.StatusSeeOther || p.Location != "/" {
		t.Fatalf("set password: %d %q", p.Status, text(p.Doc))
	}
	if p := b.get("/"); p.Status != http.StatusOK || len(serverRows(p)) != 4 {
		t.Fatalf("owner's servers after setting a password: %d, %d rows", p.Status, len(serverRows(p)))
	}
	if p := f.browser().post(auth.SignInPath, form); p.Status != http.StatusNotFound {
		t.Fatalf("the link used twice: %d", p.Status)
	}
}

func TestServersPageOrderAndColumns(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn(f.owner)
	p := b.get("/")
	var got []string
	for _, row := range serverRows(p) {
		got = append(got, fmt.Sprintf("%s/%s/%s", text(findAll(row, func(n *html.Node) bool { return attr(n, "class") == "server-name" })[0]),
			attr(row, "data-color"), attr(row, "data-pinned")))
	}
	// beta is pinned; then alphabetically, ignoring case, with the
	// installation's Default. Other is in another account.
	want := []string{"beta/Blue/true", "Alpha/Green/false", "Default/Purple/false", "Gamma/Red/false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("rows %v, want %v", got, want)
	}
	// Pin Gamma from the list: it goes up, after beta by name.
	if p := b.post(fmt.Sprintf("/servers/%d/pin", f.gamma.ID), url.Values{"pinned": {"true"}}); p.Status != http.StatusSeeOther {
		t.Fatalf("pin: %d", p.Status)
	}
	if p := b.post(fmt.Sprintf("/servers/%d/color", f.alpha.ID), url.Values{"color": {"yellow"}}); p.Status != http.StatusSeeOther {
		t.Fatalf("colour: %d", p.Status)
	}
	got = nil
	for _, row := range serverRows(b.get("/")) {
		got = append(got, attr(row, "data-server-id")+"/"+attr(row, "data-color")+"/"+attr(row, "data-pinned"))
	}
	want = []string{fmt.Sprintf("%d/Blue/true", f.beta.ID), fmt.Sprintf("%d/Red/true", f.gamma.ID), fmt.Sprintf("%d/Yellow/false", f.alpha.ID),
		fmt.Sprintf("%d/Purple/false", f.inst.ServerID)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after pin and colour: %v, want %v", got, want)
	}
}

func TestServersPageCounts(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	for i := range 4 {
		enqueue(t, f, f.alpha.ID, fmt.Sprintf("to%d@example.net", i), now.Add(-time.Duration(i)*time.Hour))
	}
	b := f.signedIn(f.owner)
	row := rowOf(t, b.get("/"), f.alpha.ID)
	cells := findAll(row, func(n *html.Node) bool { return n.Data == "td" })
	if got := text(cells[2]); got != "4" {
		t.Errorf("sent in 30 days %q, want 4", got)
	}
	if got := text(cells[4]); got != "4" {
		t.Errorf("queue %q, want 4", got)
	}
	if got := text(cells[5]); got != now.Format("2006-01-02 15:04 UTC") {
		t.Errorf("last message %q", got)
	}
}

func rowOf(t *testing.T, p page, id int64) *html.Node {
	t.Helper()
	for _, row := range serverRows(p) {
		if attr(row, "data-server-id") == strconv.FormatInt(id, 10) {
			return row
		}
	}
	t.Fatalf("no row for server %d", id)
	return nil
}

// enqueue files a message as the intake does.
func enqueue(t *testing.T, f *fixture, serverID int64, to string, at time.Time) string {
	t.Helper()
	srv, err := f.st.Server(serverID)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%08d-0000-4000-8000-%012d", serverID, at.UnixNano()%1e12)
	raw := []byte("From: App <app@example.com>\r\nTo: " + to + "\r\nSubject: Hello " + to + "\r\nX-Secret: no\r\n\r\nHi\r\n")
	sub := store.Accept(srv, store.Message{MessageID: id, ServerID: serverID, EnvelopeFrom: "app@example.com", From: "App <app@example.com>",
		To: []store.Address{{Email: to}}, Recipients: []string{to}, Subject: "Hello " + to, MessageStream: "outbound", ReceivedAt: at, Size: len(raw)}, raw)
	if err := f.st.Enqueue(sub); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTwoFactor(t *testing.T) {
	f := newFixture(t)
	b := f.signedIn(f.owner)
	p := b.get("/twofactor")
	secret := text(byID(p.Doc, "totp-secret"))
	if p.Status != http.StatusOK || len(secret) < 16 {
		t.Fatalf("set-up page: %d, secret %q", p.Status, secret)
	}
	if p := b.post("/twofactor", url.Values{"secret": {secret}, "code": {"000000"}}); p.Status != http.StatusUnprocessableEntity {
		t.Fatalf("wrong code accepted: %d", p.Status)
	}
	code, err := totp.GenerateCode(secret, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p := b.post("/twofactor", url.Values{"secret": {secret}, "code": {code}}); p.Status != http.StatusSeeOther {
		t.Fatalf("turn on: %d %s", p.Status, text(p.Doc))
	}
	// An Owner requires it of everyone.
	if p := b.post("/account/twofactor", url.Values{"require": {"on"}}); p.Status != http.StatusSeeOther {
		t.Fatalf("require: %d", p.Status)
	}
	other := f.browser()
	if p := other.signIn(f.owner.Email); p.Status != http.StatusUnauthorized {
		t.Fatalf("sign-in without the code: %d", p.Status)
	}
	f.clock.Add(30 * time.Second)
	code, _ = totp.GenerateCode(secret, f.clock.Now())
	if p := other.signIn(f.owner.Email, "code", code); p.Status != http.StatusSeeOther {
		t.Fatalf("sign-in with the code: %d %s", p.Status, text(p.Doc))
	}
	// The Admin has none: every page leads to setting one up.
	admin := f.signedIn(f.admin)
	if p := admin.get("/"); p.Status != http.StatusSeeOther || p.Location != "/twofactor" {
		t.Fatalf("admin without a second factor: %d %q", p.Status, p.Location)
	}
	if p := admin.get("/twofactor"); p.Status != http.StatusOK || !strings.Contains(text(p.Doc), "requires a second factor") {
		t.Fatalf("set-up page: %d", p.Status)
	}
}
