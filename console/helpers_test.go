package console_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/net/html"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/console"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// clock is a settable clock for the console under test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is a console on a bbolt store with two accounts and people of
// every role.
type fixture struct {
	t       *testing.T
	st      *bolt.Store
	clock   *clock
	srv     *httptest.Server
	console *console.Console
	inst    auth.Installation
	// Account A (the operator's) holds Alpha, beta and Gamma; account B
	// holds Other.
	accountA, accountB  int64
	alpha, beta, gamma  store.Server
	other               store.Server
	owner, admin        store.User // Owner and Admin of A
	serverAdmin, viewer store.User // Members of A: Admin of Alpha; Viewer of Alpha
	ownerOfBoth         store.User // Owner of A and of B
	outsider            store.User // Owner of B only
}

const testPassword = "correct horse battery staple"

// testPasswordHash is an argon2id hash of testPassword with the smallest
// cost: password.Verify reads the cost from the hash, so the tests' many
// sign-ins take microseconds instead of the 64 MiB and 3 passes of every
// hash the console makes.
var testPasswordHash = func() string {
	salt := []byte("postern-test-salt")
	key := argon2.IDKey([]byte(testPassword), salt, 1, 8, 1, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=8,t=1,p=1$%s$%s", argon2.Version, enc.EncodeToString(salt), enc.EncodeToString(key))
}()

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "postern.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, clock: &clock{now: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)}}
	if f.inst, err = auth.Init(st, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.accountA = f.inst.AccountID
	b, err := st.CreateAccount("Bravo Agency", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.accountB = b.ID
	f.alpha = f.server(f.accountA, "Alpha", "Green", false)
	f.beta = f.server(f.accountA, "beta", "Blue", true)
	f.gamma = f.server(f.accountA, "Gamma", "Red", false)
	f.other = f.server(f.accountB, "Other", "Orange", false)
	f.owner = f.user("owner@example.com", store.Membership{AccountID: f.accountA, Role: store.UserOwner})
	f.admin = f.user("admin@example.com", store.Membership{AccountID: f.accountA, Role: store.UserAdmin})
	f.serverAdmin = f.user("client-admin@example.com", store.Membership{AccountID: f.accountA, Role: store.UserMember,
		Servers: []store.ServerGrant{{ServerID: f.alpha.ID, Access: store.AccessAdmin}}})
	f.viewer = f.user("client@example.com", store.Membership{AccountID: f.accountA, Role: store.UserMember,
		Servers: []store.ServerGrant{{ServerID: f.alpha.ID, Access: store.AccessViewer}}})
	f.ownerOfBoth = f.user("both@example.com", store.Membership{AccountID: f.accountA, Role: store.UserOwner},
		store.Membership{AccountID: f.accountB, Role: store.UserOwner})
	f.outsider = f.user("outsider@example.com", store.Membership{AccountID: f.accountB, Role: store.UserOwner})
	f.console, err = console.New(console.Config{
		Store:    st,
		Throttle: auth.NewThrottle(auth.ThrottleConfig{Failures: 5, Window: 5 * time.Minute, Now: f.clock.Now}),
		SMTPAddr: "127.0.0.1:2525",
		Now:      f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.console)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) server(account int64, name, color string, pinned bool) store.Server {
	f.t.Helper()
	srv, err := f.st.CreateServer(store.NewServer(store.Server{AccountID: account, Name: name, Color: color, Pinned: pinned, SmtpApiActivated: true}, f.clock.Now()),
		auth.StoreToken(auth.NewToken()), f.clock.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return srv
}

func (f *fixture) user(email string, ms ...store.Membership) store.User {
	f.t.Helper()
	u, err := f.st.CreateUser(store.User{Email: email, PasswordHash: testPasswordHash, CreatedAt: f.clock.Now()})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, m := range ms {
		m.UserID = u.ID
		if err := f.st.SetMembership(m); err != nil {
			f.t.Fatal(err)
		}
	}
	return u
}

// browser is one person's cookie jar against the console.
type browser struct {
	f      *fixture
	client *http.Client
}

func (f *fixture) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{f: f, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer: its status, Location and parsed HTML.
type page struct {
	Status   int
	Location string
	Body     string
	Doc      *html.Node
}

func (b *browser) do(req *http.Request) page {
	b.f.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(body)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if p.Doc, err = html.Parse(strings.NewReader(p.Body)); err != nil {
			b.f.t.Fatalf("%s %s: HTML does not parse: %v", req.Method, req.URL.Path, err)
		}
	}
	return p
}

func (b *browser) get(path string) page {
	b.f.t.Helper()
	req, _ := http.NewRequest("GET", b.f.srv.URL+path, nil)
	return b.do(req)
}

// post sends a form; the session's CSRF token is added unless form has
// one.
func (b *browser) post(path string, form url.Values) page {
	b.f.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok {
		form.Set("csrf", b.csrf())
	}
	req, _ := http.NewRequest("POST", b.f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// csrf reads the token of the forms on the account page.
func (b *browser) csrf() string {
	b.f.t.Helper()
	p := b.get("/account")
	if p.Status != http.StatusOK {
		return ""
	}
	for _, n := range findAll(p.Doc, func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == "csrf" }) {
		return attr(n, "value")
	}
	return ""
}

// signIn signs in as email with the test password.
func (b *browser) signIn(email string, extra ...string) page {
	b.f.t.Helper()
	p := b.get("/signin")
	token := ""
	for _, n := range findAll(p.Doc, func(n *html.Node) bool { return attr(n, "name") == "csrf" }) {
		token = attr(n, "value")
	}
	form := url.Values{"csrf": {token}, "email": {email}, "password": {testPassword}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	return b.post("/signin", form)
}

func (f *fixture) signedIn(u store.User) *browser {
	f.t.Helper()
	b := f.browser()
	if p := b.signIn(u.Email); p.Status != http.StatusSeeOther {
		f.t.Fatalf("sign-in as %s: %d %s", u.Email, p.Status, text(p.Doc))
	}
	return b
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(n *html.Node, id string) *html.Node {
	if all := findAll(n, func(n *html.Node) bool { return attr(n, "id") == id }); len(all) > 0 {
		return all[0]
	}
	return nil
}

// text is the visible text of n, spaces collapsed.
func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		if n.Type == html.ElementNode && (n.Data == "script" || n.Data == "style") {
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// serverRows are the rows of the servers page: IDs in order.
func serverRows(p page) []*html.Node {
	return findAll(p.Doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-server-id") != "" })
}
