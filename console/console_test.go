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
	"github.com/postern/postern/console"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/relay"
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

// enqueue files a message from app@example.com as the intake does.
func enqueue(t *testing.T, f *fixture, serverID int64, to string, at time.Time) string {
	t.Helper()
	return enqueueFrom(t, f, serverID, "app@example.com", to, at)
}

func enqueueFrom(t *testing.T, f *fixture, serverID int64, from, to string, at time.Time) string {
	t.Helper()
	srv, err := f.st.Server(serverID)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%08d-0000-4000-8000-%012d", serverID, at.UnixNano()%1e12)
	raw := []byte("From: App <" + from + ">\r\nTo: " + to + "\r\nSubject: Hello " + to + "\r\nX-Secret: no\r\n\r\nHi\r\n")
	sub := store.Accept(srv, store.Message{MessageID: id, ServerID: serverID, EnvelopeFrom: from, From: "App <" + from + ">",
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

func TestDomainPage(t *testing.T) {
	f := newFixture(t)
	dns := dnstest.New(t)
	c, err := console.New(console.Config{Store: f.st, Throttle: auth.NewThrottle(auth.ThrottleConfig{}), Resolver: relay.NewResolver(dns.Addr()), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = c
	keys, err := dkim.Generate("acme.example")
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.st.CreateDomain(store.Domain{AccountID: f.accountA, Name: "acme.example", Keys: keys}, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	enqueueFrom(t, f, f.alpha.ID, "billing@acme.example", "client@example.net", f.clock.Now())
	enqueueFrom(t, f, f.gamma.ID, "app@other.example", "client@example.net", f.clock.Now())

	b := f.signedIn(f.admin)
	path := fmt.Sprintf("/domains/%d", d.ID)
	p := b.get(path)
	var hosts []string
	for _, n := range findAll(p.Doc, func(n *html.Node) bool { return strings.HasPrefix(attr(n, "id"), "host-") }) {
		hosts = append(hosts, text(n))
	}
	if p.Status != http.StatusOK || len(hosts) != 2 || hosts[0] != keys[0].Host || hosts[1] != keys[1].Host {
		t.Fatalf("domain page: %d, record hosts %q", p.Status, hosts)
	}
	if got := text(byID(p.Doc, "senders")); got != "Alpha" {
		t.Errorf("servers that sent as acme.example: %q, want Alpha", got)
	}
	// Verify now, records missing: not verified, and the page says so.
	if p := b.post(path+"/verify", nil); p.Status != http.StatusSeeOther {
		t.Fatalf("verify: %d %s", p.Status, text(p.Doc))
	}
	if got, _ := f.st.Domain(d.ID); got.DKIMVerified {
		t.Fatal("verified without records")
	}
	for _, k := range keys {
		dns.SetTXT(k.Host, k.TextValue)
	}
	if p := b.post(path+"/verify", nil); p.Status != http.StatusSeeOther {
		t.Fatalf("verify: %d %s", p.Status, text(p.Doc))
	}
	if got, _ := f.st.Domain(d.ID); !got.DKIMVerified {
		t.Fatal("not verified with both records published")
	}
	if !strings.Contains(text(b.get(path).Doc), "DKIM verified") {
		t.Error("the page does not say the domain is verified")
	}
	// A Server Admin of Alpha does not manage the account's domains.
	if p := f.signedIn(f.serverAdmin).get(path); p.Status != http.StatusNotFound {
		t.Errorf("a Member on the domain page: %d", p.Status)
	}
}

func TestServerPages(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	first := enqueue(t, f, f.alpha.ID, "ann@example.net", now.Add(-time.Hour))
	enqueue(t, f, f.alpha.ID, "bob@example.net", now)
	admin, viewer := f.signedIn(f.serverAdmin), f.signedIn(f.viewer)
	base := fmt.Sprintf("/servers/%d", f.alpha.ID)

	// Activity, filtered by recipient.
	p := viewer.get(base + "?recipient=ann@example.net")
	rows := findAll(p.Doc, func(n *html.Node) bool { return attr(n, "data-message-id") != "" })
	if p.Status != http.StatusOK || len(rows) != 1 || attr(rows[0], "data-message-id") != first {
		t.Fatalf("activity for ann: %d, %d rows", p.Status, len(rows))
	}
	if p := viewer.get(base + "?from=yesterday"); p.Status != http.StatusUnprocessableEntity || !strings.Contains(text(p.Doc), "is not a date") {
		t.Errorf("a bad date: %d", p.Status)
	}
	// A message: headers for both, the raw dump for the Server Admin only.
	p = viewer.get(base + "/messages/" + first)
	if !strings.Contains(text(byID(p.Doc, "headers")), "Subject Hello ann@example.net") || byID(p.Doc, "raw-link") != nil {
		t.Errorf("the Viewer's message page: headers %q, raw link %v", text(byID(p.Doc, "headers")), byID(p.Doc, "raw-link") != nil)
	}
	if byID(admin.get(base+"/messages/"+first).Doc, "raw-link") == nil {
		t.Error("no raw link for the Server Admin")
	}
	if p := admin.get(base + "/messages/" + first + "/raw"); p.Status != http.StatusOK || !strings.HasPrefix(p.Body, "From: App <app@example.com>") {
		t.Errorf("raw: %d %q", p.Status, p.Body)
	}
	// A token: shown once, with the swaks line that uses it.
	p = admin.post(base+"/tokens", nil)
	token := text(byID(p.Doc, "token-value"))
	if _, err := auth.NewAuthenticator(f.st).Lookup(token); err != nil || !strings.Contains(text(byID(p.Doc, "swaks-line")), "--auth-user "+token) {
		t.Fatalf("new token %q (%v), swaks %q", token, err, text(byID(p.Doc, "swaks-line")))
	}
	if strings.Contains(admin.get(base+"/tokens").Body, token) {
		t.Error("the token is shown again")
	}
	// Settings.
	form := url.Values{"name": {"Alpha prod"}, "color": {"Turquoise"}, "rate": {"60"}, "quota": {""}, "retention": {"30"}, "smtp": {"on"}}
	if p := admin.post(base+"/settings", form); p.Status != http.StatusSeeOther {
		t.Fatalf("settings: %d %s", p.Status, text(p.Doc))
	}
	if srv, _ := f.st.Server(f.alpha.ID); srv.Name != "Alpha prod" || srv.Color != "Turquoise" || srv.RateLimitPerMinute != 60 || srv.RetentionDays != 30 || !srv.SmtpApiActivated {
		t.Errorf("after settings: %+v", srv)
	}
	form.Set("name", "Gamma")
	if p := admin.post(base+"/settings", form); p.Status != http.StatusUnprocessableEntity || !strings.Contains(text(p.Doc), "already exists") {
		t.Errorf("a name taken: %d", p.Status)
	}
	// A bounce, reactivated.
	b, err := f.st.RecordLateBounce(f.alpha.ID, first, store.Outcome{Recipient: "ann@example.net", Type: store.EventBounced,
		Details: store.EventDetails{BounceType: "HardBounce", BounceTypeCode: 1, DeliveryMessage: "550 5.1.1 gone"}, Inactivate: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	if p := admin.get(base + "/bounces"); !strings.Contains(text(p.Doc), "550 5.1.1 gone") {
		t.Errorf("bounces page: %q", text(byID(p.Doc, "bounces")))
	}
	if p := admin.post(fmt.Sprintf("%s/bounces/%d/activate", base, b.ID), nil); p.Status != http.StatusSeeOther {
		t.Fatalf("reactivate: %d", p.Status)
	}
	if _, inactive, _ := f.st.Suppressed(f.alpha.ID, "ann@example.net"); inactive {
		t.Error("still inactive after reactivation")
	}
	// Stats: a bar per day, the totals.
	p = viewer.get(base + "/stats")
	if bars := findAll(p.Doc, func(n *html.Node) bool { return n.Data == "rect" && attr(n, "class") == "sent" }); len(bars) != 30 {
		t.Errorf("%d bars of sends, want 30", len(bars))
	}
	if got := text(byID(p.Doc, "stats-totals")); !strings.Contains(got, "2 sent") {
		t.Errorf("stats totals %q", got)
	}
}

func TestUsersPage(t *testing.T) {
	f := newFixture(t)
	owner, admin := f.signedIn(f.owner), f.signedIn(f.admin)
	form := url.Values{"email": {"new.client@example.com"}, "role": {"Member"}, fmt.Sprintf("access-%d", f.gamma.ID): {"Viewer"}}
	p := admin.post("/users", form)
	link := text(byID(p.Doc, "link-value"))
	if p.Status != http.StatusOK || !strings.Contains(link, auth.SignInPath+"?token=") {
		t.Fatalf("invite: %d, link %q", p.Status, link)
	}
	u, err := f.st.UserByEmail("new.client@example.com")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := f.st.Memberships(u.ID)
	if len(ms) != 1 || ms[0].Role != store.UserMember || len(ms[0].Servers) != 1 || ms[0].Servers[0] != (store.ServerGrant{ServerID: f.gamma.ID, Access: store.AccessViewer}) {
		t.Fatalf("membership %+v", ms)
	}
	// An Admin makes no Owner and changes none.
	if p := admin.post("/users", url.Values{"email": {"boss@example.com"}, "role": {"Owner"}}); p.Status != http.StatusForbidden {
		t.Errorf("an Admin making an Owner: %d", p.Status)
	}
	if p := admin.post(fmt.Sprintf("/users/%d", f.owner.ID), url.Values{"role": {"Member"}}); p.Status != http.StatusForbidden {
		t.Errorf("an Admin demoting an Owner: %d", p.Status)
	}
	// Someone of another account is the same person, with a second
	// membership and their password kept.
	if p := owner.post("/users", url.Values{"email": {f.outsider.Email}, "role": {"Admin"}}); p.Status != http.StatusOK || byID(p.Doc, "link-value") != nil {
		t.Fatalf("adding a person of another account: %d", p.Status)
	}
	if ms, _ := f.st.Memberships(f.outsider.ID); len(ms) != 2 {
		t.Errorf("their memberships: %+v", ms)
	}
	// Removing them from this account leaves the other.
	if p := owner.post(fmt.Sprintf("/users/%d/remove", f.outsider.ID), nil); p.Status != http.StatusSeeOther {
		t.Fatalf("remove: %d", p.Status)
	}
	if ms, _ := f.st.Memberships(f.outsider.ID); len(ms) != 1 || ms[0].AccountID != f.accountB {
		t.Errorf("after removal: %+v", ms)
	}
	rows := findAll(owner.get("/users").Doc, func(n *html.Node) bool { return attr(n, "data-user-id") != "" })
	if len(rows) != 7 { // owner@localhost, the fixture's five of account A, the invited client
		var got []string
		for _, r := range rows {
			got = append(got, text(r))
		}
		t.Errorf("%d people: %q", len(rows), got)
	}
}
