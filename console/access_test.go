package console_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// need is what a route asks of the person.
type need int

const (
	anyone      need = iota // no session needed
	signInPage              // for the signed-out: the signed-in are sent on
	signedIn                // any signed-in person
	seeServer               // may see the server (Viewer or more)
	adminServer             // Server Admin of it (or Owner/Admin of the account)
	accountWide             // Owner or Admin of the account
	ownerOnly               // Owner of the account
)

// route is one console route in the matrix: how to call it on a
// server (its ID and that server's message and bounce), what it needs,
// and its status when allowed.
type route struct {
	need    need
	allowed int
	request func(f *fixture, s target) (method, path string, form url.Values)
}

// inAccountA are the routes whose request names something of account A,
// which a person working in another account is not shown.
var inAccountA = map[string]bool{"POST /users/{id}": true}

// target is a server of the fixture with a message and a bounce.
type target struct {
	srv       store.Server
	messageID string
	bounceID  int64
}

// matrix holds every route of the console; TestAccessMatrix fails when
// one is missing.
var matrix = map[string]route{
	"GET /static/":  {anyone, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/static/console.css", nil }},
	"GET /signin":   {signInPage, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/signin", nil }},
	"POST /signin":  {anyone, 403, func(f *fixture, s target) (string, string, url.Values) { return "POST", "/signin", url.Values{} }},
	"POST /signout": {signedIn, 303, func(f *fixture, s target) (string, string, url.Values) { return "POST", "/signout", url.Values{} }},
	"GET " + auth.SignInPath: {anyone, 200, func(f *fixture, s target) (string, string, url.Values) {
		return "GET", auth.SignInPath + "?token=x", nil
	}},
	"POST " + auth.SignInPath: {anyone, 404, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", auth.SignInPath, url.Values{"token": {"unknown"}, "password": {"twelve chars or more"}, "password2": {"twelve chars or more"}}
	}},
	"GET /twofactor": {signedIn, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/twofactor", nil }},
	"POST /twofactor": {signedIn, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/twofactor", url.Values{"code": {"1"}}
	}},
	"GET /{$}": {signedIn, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/", nil }},
	"POST /servers": {accountWide, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/servers", url.Values{"name": {""}}
	}},
	"POST /servers/{id}/pin": {adminServer, 303, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/pin"), url.Values{"pinned": {"false"}}
	}},
	"POST /servers/{id}/color": {adminServer, 303, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/color"), url.Values{"color": {s.srv.Color}}
	}},
	"GET /servers/{id}": {seeServer, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", srvPath(s, ""), nil }},
	"GET /servers/{id}/messages/{mid}": {seeServer, 200, func(f *fixture, s target) (string, string, url.Values) {
		return "GET", srvPath(s, "/messages/"+s.messageID), nil
	}},
	"GET /servers/{id}/messages/{mid}/raw": {adminServer, 200, func(f *fixture, s target) (string, string, url.Values) {
		return "GET", srvPath(s, "/messages/"+s.messageID+"/raw"), nil
	}},
	"GET /servers/{id}/bounces": {adminServer, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", srvPath(s, "/bounces"), nil }},
	"POST /servers/{id}/bounces/{bid}/activate": {adminServer, 303, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, fmt.Sprintf("/bounces/%d/activate", s.bounceID)), url.Values{}
	}},
	"GET /servers/{id}/stats":    {seeServer, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", srvPath(s, "/stats"), nil }},
	"GET /servers/{id}/settings": {adminServer, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", srvPath(s, "/settings"), nil }},
	"POST /servers/{id}/settings": {adminServer, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/settings"), url.Values{"name": {""}}
	}},
	"POST /servers/{id}/delete": {ownerOnly, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/delete"), url.Values{"confirm": {"not its name"}}
	}},
	"GET /servers/{id}/tokens": {adminServer, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", srvPath(s, "/tokens"), nil }},
	"POST /servers/{id}/tokens": {adminServer, 200, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/tokens"), url.Values{}
	}},
	"POST /servers/{id}/tokens/{prefix}/revoke": {adminServer, 404, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", srvPath(s, "/tokens/nosuchpf/revoke"), url.Values{}
	}},
	"GET /domains":      {accountWide, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/domains", nil }},
	"GET /domains/{id}": {accountWide, 404, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/domains/999", nil }},
	"POST /domains/{id}/verify": {accountWide, 404, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/domains/999/verify", url.Values{}
	}},
	"GET /users": {accountWide, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/users", nil }},
	"POST /users": {accountWide, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/users", url.Values{"email": {"not an address"}}
	}},
	"POST /users/{id}": {accountWide, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", fmt.Sprintf("/users/%d", f.viewer.ID), url.Values{"role": {"Emperor"}}
	}},
	"POST /users/{id}/remove": {accountWide, 404, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/users/999/remove", url.Values{}
	}},
	"GET /account": {signedIn, 200, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/account", nil }},
	"POST /account/switch": {signedIn, 404, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/account/switch", url.Values{"account": {"999"}}
	}},
	"POST /account/password": {signedIn, 422, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/account/password", url.Values{"current": {"not the password"}}
	}},
	"POST /account/twofactor": {ownerOnly, 303, func(f *fixture, s target) (string, string, url.Values) {
		return "POST", "/account/twofactor", url.Values{}
	}},
	"POST /account/transfer": {ownerOnly, 403, func(f *fixture, s target) (string, string, url.Values) {
		// To an account the person does not own: refused even to an
		// Owner; a server they cannot see is not found first.
		return "POST", "/account/transfer", url.Values{"server": {fmt.Sprint(s.srv.ID)}, "account": {"999"}}
	}},
	"/": {signedIn, 404, func(f *fixture, s target) (string, string, url.Values) { return "GET", "/no/such/page", nil }},
}

func srvPath(s target, rest string) string { return fmt.Sprintf("/servers/%d%s", s.srv.ID, rest) }

// serverRoute: the route is about the server of its path.
func serverRoute(pattern string) bool {
	return strings.Contains(pattern, "/servers/{id}") || pattern == "POST /account/transfer"
}

func TestAccessMatrix(t *testing.T) {
	f := newFixture(t)
	for _, p := range f.console.Routes() {
		if _, ok := matrix[p]; !ok {
			t.Errorf("route %q is not in the access matrix: add it", p)
		}
	}
	targets := map[string]target{}
	for name, srv := range map[string]store.Server{"alpha": f.alpha, "gamma": f.gamma, "other": f.other} {
		id := enqueue(t, f, srv.ID, "gone@example.net", f.clock.Now())
		b, err := f.st.RecordLateBounce(srv.ID, id, store.Outcome{Recipient: "gone@example.net", Type: store.EventBounced,
			Details: store.EventDetails{BounceType: "HardBounce", BounceTypeCode: 1, DeliveryMessage: "550 5.1.1 no such user"}, Inactivate: true}, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		targets[name] = target{srv: srv, messageID: id, bounceID: b.ID}
	}
	// Each person's role in the account their session works in, and
	// their access to each target.
	type person struct {
		name   string
		user   *store.User
		role   string
		access map[string]string
	}
	full := map[string]string{"alpha": store.AccessAdmin, "gamma": store.AccessAdmin}
	people := []person{
		{"owner", &f.owner, store.UserOwner, full},
		{"admin", &f.admin, store.UserAdmin, full},
		{"server admin", &f.serverAdmin, store.UserMember, map[string]string{"alpha": store.AccessAdmin}},
		{"server viewer", &f.viewer, store.UserMember, map[string]string{"alpha": store.AccessViewer}},
		{"owner of another account", &f.outsider, store.UserOwner, map[string]string{"other": store.AccessAdmin}},
		{"signed out", nil, "", nil},
	}
	sessions := map[string]*browser{}
	patterns := make([]string, 0, len(matrix))
	for p := range matrix {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	for _, pattern := range patterns {
		r := matrix[pattern]
		for _, who := range people {
			for _, tname := range []string{"alpha", "gamma", "other"} {
				if !serverRoute(pattern) && tname != "alpha" {
					continue
				}
				tg := targets[tname]
				// One session per person, and a fresh one for the route
				// that ends it.
				b := sessions[who.name]
				if b == nil {
					b = f.browser()
					if who.user != nil {
						b = f.signedIn(*who.user)
					}
					sessions[who.name] = b
				}
				method, path, form := r.request(f, tg)
				want := expected(r, method, who.user != nil, who.role, who.access[tname], serverRoute(pattern))
				if inAccountA[pattern] && who.user == &f.outsider && want == r.allowed {
					want = http.StatusNotFound
				}
				var p page
				if method == "GET" {
					p = b.get(path)
				} else {
					p = b.post(path, form)
				}
				if pattern == "POST /signout" {
					delete(sessions, who.name) // it ended that session
				}
				if p.Status != want {
					t.Errorf("%s as %s on %s: %d, want %d (%s)", pattern, who.name, tname, p.Status, want, text(p.Doc))
				}
				if p.Status == http.StatusNotFound && p.Doc != nil && strings.Contains(text(p.Doc), tg.srv.Name) && serverRoute(pattern) {
					t.Errorf("%s as %s on %s: the 404 names the server", pattern, who.name, tname)
				}
			}
		}
	}
}

// expected is the status of a route for a person: signedIn says there
// is a session, role is theirs in the account of the session, access is
// theirs to the route's server.
func expected(r route, method string, signedIn bool, role, access string, onServer bool) int {
	switch {
	case r.need == anyone:
		return r.allowed
	case r.need == signInPage && signedIn:
		return http.StatusSeeOther
	case r.need == signInPage:
		return r.allowed
	case !signedIn && method == "GET":
		return http.StatusSeeOther // to the sign-in page
	case !signedIn:
		return http.StatusForbidden
	}
	wide := role == store.UserOwner || role == store.UserAdmin
	switch r.need {
	case accountWide:
		if !wide {
			return http.StatusNotFound
		}
	case ownerOnly:
		if onServer && access == "" {
			return http.StatusNotFound
		}
		if role != store.UserOwner {
			return http.StatusForbidden
		}
	case seeServer:
		if access == "" {
			return http.StatusNotFound
		}
	case adminServer:
		if access == "" {
			return http.StatusNotFound
		}
		if access != store.AccessAdmin {
			return http.StatusForbidden
		}
	}
	return r.allowed
}
