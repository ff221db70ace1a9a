package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// The isolation matrix: two accounts (the operator's and one created with
// POST /accounts), two Live servers each (created with POST /servers),
// each server with a message sent over SMTP that the relay delivered to
// one recipient and bounced for the other, and a domain per account.
// Every endpoint the API registers is in isolationEndpoints, and
// TestIsolationCoversEveryEndpoint fails when one is not, so that a new
// endpoint cannot stay out of the matrix unnoticed.

// level is who may call an endpoint.
type level int

const (
	serverLevel  level = iota // X-Postmark-Server-Token
	accountLevel              // X-Postmark-Account-Token
	operatorOnly              // the operator account's owner tokens
	// hiddenOperator: the operator account's owner tokens; any other
	// request, whatever token it carries or lacks, gets an unknown path's
	// answer (not even 401).
	hiddenOperator
	// public: no token (the unsubscribe links, signed for one server's
	// recipient: see TestUnsubscribe).
	public
)

// refs are the IDs a request's path names.
type refs struct {
	server   int64  // a server (account level)
	prefix   string // one of that server's tokens
	domain   int64
	acctTok  string // an account token's prefix
	account  int64
	message  string
	bounceID int64
	webhook  int64
	stream   string
	report   int64 // a DMARC report of the domain
	user     int64 // a person of the account
}

// endpoint is one registered pattern and a request to it.
type endpoint struct {
	pattern string // exactly as registered
	level   level
	path    func(x refs) string
	body    any // a valid body, for PUT and POST
}

func (ep endpoint) method() string {
	m, _, _ := strings.Cut(ep.pattern, " ")
	return m
}

// byID says whether the path names something by ID.
func (ep endpoint) byID() bool {
	return strings.Contains(strings.ReplaceAll(ep.pattern, "{$}", ""), "{")
}

// safe says whether the request changes nothing when it succeeds.
func (ep endpoint) safe() bool { return ep.method() == http.MethodGet }

func fixed(p string) func(refs) string { return func(refs) string { return p } }

func domainPath(suffix string) func(refs) string {
	return func(x refs) string { return fmt.Sprintf("/domains/%d%s", x.domain, suffix) }
}

func streamPath(suffix string) func(refs) string {
	return func(x refs) string { return "/message-streams/" + x.stream + suffix }
}

// isoSuppressions is a body of the suppressions endpoints.
var isoSuppressions = map[string]any{"Suppressions": []map[string]string{{"EmailAddress": "suppressed@example.net"}}}

func webhookPath(suffix string) func(refs) string {
	return func(x refs) string { return fmt.Sprintf("/webhooks/%d%s", x.webhook, suffix) }
}

// isoEmail is a message any server of the matrix may send.
var isoEmail = map[string]any{"From": "app@example.com", "To": "sent-over-http@example.net", "Subject": "over HTTP", "TextBody": "Hello."}

// isolationEndpoints are every endpoint of the API.
func isolationEndpoints() []endpoint {
	return []endpoint{
		// Server level.
		{"GET /server", serverLevel, fixed("/server"), nil},
		{"PUT /server", serverLevel, fixed("/server"), map[string]any{"Pinned": false}},
		{"GET /messages/outbound", serverLevel, fixed("/messages/outbound?count=500&offset=0"), nil},
		{"GET /messages/outbound/{id}/details", serverLevel, func(x refs) string { return "/messages/outbound/" + x.message + "/details" }, nil},
		{"GET /messages/outbound/{id}/dump", serverLevel, func(x refs) string { return "/messages/outbound/" + x.message + "/dump" }, nil},
		{"GET /stats/outbound", serverLevel, fixed("/stats/outbound"), nil},
		{"GET /stats/outbound/sends", serverLevel, fixed("/stats/outbound/sends"), nil},
		{"GET /stats/outbound/bounces", serverLevel, fixed("/stats/outbound/bounces"), nil},
		{"GET /deliverystats", serverLevel, fixed("/deliverystats"), nil},
		{"GET /bounces", serverLevel, fixed("/bounces?count=500&offset=0"), nil},
		{"GET /bounces/{id}", serverLevel, func(x refs) string { return fmt.Sprintf("/bounces/%d", x.bounceID) }, nil},
		{"GET /bounces/{id}/dump", serverLevel, func(x refs) string { return fmt.Sprintf("/bounces/%d/dump", x.bounceID) }, nil},
		{"PUT /bounces/{id}/activate", serverLevel, func(x refs) string { return fmt.Sprintf("/bounces/%d/activate", x.bounceID) }, nil},

		{"GET /message-streams", serverLevel, fixed("/message-streams"), nil},
		{"GET /message-streams/{stream}", serverLevel, streamPath(""), nil},
		{"GET /message-streams/{stream}/suppressions/dump", serverLevel, streamPath("/suppressions/dump"), nil},
		{"PATCH /message-streams/{stream}", serverLevel, streamPath(""), map[string]any{"Description": "changed"}},
		{"POST /message-streams/{stream}/archive", serverLevel, streamPath("/archive"), nil},
		{"POST /message-streams/{stream}/unarchive", serverLevel, streamPath("/unarchive"), nil},
		{"POST /message-streams/{stream}/suppressions", serverLevel, streamPath("/suppressions"), isoSuppressions},
		{"POST /message-streams/{stream}/suppressions/delete", serverLevel, streamPath("/suppressions/delete"), isoSuppressions},
		{"GET /unsubscribe/{token}", public, fixed("/unsubscribe/x.y"), nil},
		{"POST /unsubscribe/{token}", public, fixed("/unsubscribe/x.y"), nil},
		{"GET /webhooks", serverLevel, fixed("/webhooks"), nil},
		{"GET /webhooks/{id}", serverLevel, webhookPath(""), nil},
		{"GET /webhooks/{id}/deliveries", serverLevel, webhookPath("/deliveries"), nil},
		{"PUT /webhooks/{id}", serverLevel, webhookPath(""), map[string]any{"Triggers": map[string]any{"Delivery": map[string]bool{"Enabled": true}}}},
		{"DELETE /webhooks/{id}", serverLevel, webhookPath(""), nil},
		{"POST /webhooks", serverLevel, fixed("/webhooks"), map[string]any{"Url": "https://hooks.example/new"}},
		{"POST /message-streams", serverLevel, fixed("/message-streams"), map[string]any{"ID": "created", "Name": "Created", "MessageStreamType": "Transactional"}},
		// Sending: the answer names only the new message; last, so that
		// the listings above see the matrix's messages only.
		{"POST /email", serverLevel, fixed("/email"), isoEmail},
		{"POST /email/batch", serverLevel, fixed("/email/batch"), []any{isoEmail, isoEmail}},
		// Account level: servers and their tokens.
		{"GET /servers", accountLevel, fixed("/servers?count=500&offset=0"), nil},
		{"POST /servers", accountLevel, fixed("/servers"), map[string]any{"Name": "intruder"}},
		{"GET /servers/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d", x.server) }, nil},
		{"PUT /servers/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d", x.server) }, map[string]any{"Color": "Red"}},
		{"DELETE /servers/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d", x.server) }, nil},
		{"GET /servers/{id}/tokens", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d/tokens", x.server) }, nil},
		{"POST /servers/{id}/tokens", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d/tokens", x.server) }, nil},
		{"DELETE /servers/{id}/tokens/{prefix}", accountLevel, func(x refs) string { return fmt.Sprintf("/servers/%d/tokens/%s", x.server, x.prefix) }, nil},

		// Account level: domains.
		{"GET /domains", accountLevel, fixed("/domains?count=500&offset=0"), nil},
		{"GET /domains/{$}", accountLevel, fixed("/domains/?count=500&offset=0"), nil},
		{"POST /domains", accountLevel, fixed("/domains"), map[string]any{"Name": "intruder.example"}},
		{"POST /domains/{$}", accountLevel, fixed("/domains/"), map[string]any{"Name": "intruder.example"}},
		{"GET /domains/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d", x.domain) }, nil},
		{"PUT /domains/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d", x.domain) }, map[string]any{"ReturnPathDomain": ""}},
		{"DELETE /domains/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d", x.domain) }, nil},
		{"PUT /domains/{id}/verifyDkim", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d/verifyDkim", x.domain) }, nil},
		{"GET /users", accountLevel, fixed("/users"), nil},
		{"POST /users", accountLevel, fixed("/users"), map[string]any{"Email": "new-admin@example.com", "Password": "a long password", "Role": "Admin"}},
		{"PUT /users/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/users/%d", x.user) }, map[string]any{"Role": "Member"}},
		{"DELETE /users/{id}", accountLevel, func(x refs) string { return fmt.Sprintf("/users/%d", x.user) }, nil},
		{"GET /domains/{id}/dmarc", accountLevel, domainPath("/dmarc"), nil},
		{"PUT /domains/{id}/verifyDmarc", accountLevel, domainPath("/verifyDmarc"), nil},
		{"GET /domains/{id}/dmarc/reports", accountLevel, domainPath("/dmarc/reports"), nil},
		{"POST /domains/{id}/dmarc/reports", accountLevel, domainPath("/dmarc/reports"), "<feedback/>"},
		{"GET /domains/{id}/dmarc/reports/{rid}", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d/dmarc/reports/%d", x.domain, x.report) }, nil},
		{"GET /domains/{id}/dmarc/sources", accountLevel, domainPath("/dmarc/sources"), nil},
		{"PUT /domains/{id}/dmarc/sources/{ip}", accountLevel, domainPath("/dmarc/sources/192.0.2.1"), map[string]any{"Known": true}},
		{"PUT /domains/{id}/verifyReturnPath", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d/verifyReturnPath", x.domain) }, nil},
		{"POST /domains/{id}/rotatedkim", accountLevel, func(x refs) string { return fmt.Sprintf("/domains/%d/rotatedkim", x.domain) }, nil},

		// Account level: the account's own tokens.
		{"GET /account/tokens", accountLevel, fixed("/account/tokens"), nil},
		{"POST /account/tokens", accountLevel, fixed("/account/tokens"), map[string]any{"Role": "admin"}},
		{"DELETE /account/tokens/{prefix}", accountLevel, func(x refs) string { return "/account/tokens/" + x.acctTok }, nil},

		// The operator's.
		{"GET /accounts", operatorOnly, fixed("/accounts"), nil},
		{"POST /accounts", operatorOnly, fixed("/accounts"), map[string]any{"Name": "Intruder"}},
		{"DELETE /accounts/{id}", operatorOnly, func(x refs) string { return fmt.Sprintf("/accounts/%d", x.account) }, nil},
		{"GET /backup", hiddenOperator, fixed("/backup"), nil},
		{"GET /tlsrpt", operatorOnly, fixed("/tlsrpt?domain=example.com"), nil},
		{"POST /servers/{id}/transfer", operatorOnly, func(x refs) string { return fmt.Sprintf("/servers/%d/transfer", x.server) }, map[string]any{"AccountID": 1, "CopyDomains": true}},
	}
}

// TestIsolationCoversEveryEndpoint: the matrix's table holds exactly the
// endpoints the API registers.
func TestIsolationCoversEveryEndpoint(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := api.New(api.Config{Store: st, Auth: auth.NewAuthenticator(st)})
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, p := range a.Patterns() {
		if p != "/" {
			registered[p] = true
		}
	}
	inTable := map[string]bool{}
	for _, ep := range isolationEndpoints() {
		if inTable[ep.pattern] {
			t.Errorf("%s is in the isolation table twice", ep.pattern)
		}
		inTable[ep.pattern] = true
		if !registered[ep.pattern] {
			t.Errorf("%s is in the isolation table but not registered", ep.pattern)
		}
	}
	for p := range registered {
		if !inTable[p] {
			t.Errorf("%s is registered but not in the isolation matrix (isolationEndpoints)", p)
		}
	}
}

// isoAccount and isoServer are the matrix's principals.
type isoAccount struct {
	name         string
	id           int64
	owner, admin string // account tokens
	domain       api.DomainDetails
	report       int64 // a DMARC report of the domain
	user         int64 // a Member of the account, <name>-member@example.com
	servers      []*isoServer
}

type isoServer struct {
	acct    *isoAccount
	srv     api.Server
	token   string
	message string // its message's MessageID
	bounce  int64  // the hard bounce of that message
	webhook int64  // its webhook, to hooks.example/<name>
	stream  string // its stream, news-<name>
	// What its message shows, unique to the server.
	rcpt, nobody, tag, subject string
}

func (s *isoServer) name() string { return s.srv.Name }

// secrets are strings that only the server's own answers may contain.
func (s *isoServer) secrets() []string {
	return []string{s.message, s.rcpt, s.nobody, s.tag, s.subject, s.name(), s.token[:8], fmt.Sprint(s.bounce), "hooks.example/" + s.name()}
}

// secrets are strings that only the account's own answers may contain.
func (a *isoAccount) secrets() []string {
	out := []string{a.domain.Name, a.owner[:8], a.admin[:8]}
	for _, s := range a.servers {
		out = append(out, s.name(), s.token[:8])
	}
	return out
}

type isoWorld struct {
	*env
	accounts []*isoAccount
	servers  []*isoServer
	// Nonexistent IDs.
	missing refs
}

func newIsoWorld(t *testing.T) *isoWorld {
	e := newEnv(t, envOptions{peer: peerReplies}) // nobody* gets 550 5.1.1
	e.route("example.net")
	w := &isoWorld{env: e}
	cust := e.newAccount("Customer")
	w.accounts = []*isoAccount{
		{name: "operator", id: e.Inst.AccountID, owner: e.Inst.AccountToken},
		{name: "customer", id: cust.ID, owner: cust.AccountToken},
	}
	for _, a := range w.accounts {
		var admin api.NewTokenInfo
		e.result(e.account(http.MethodPost, "/account/tokens", a.owner, map[string]any{"Role": "admin"})).into(&admin)
		a.admin = admin.Token
		a.domain = e.createDomain(a.owner, a.name+".example")
		rep, err := e.Store.AddDMARCReport(store.DMARCReport{DomainID: a.domain.ID, Status: store.DMARCFailed, Error: "not a report", Via: "upload", ReceivedAt: time.Now()}, []byte(a.name))
		if err != nil {
			t.Fatal(err)
		}
		a.report = rep.ID
		member, err := e.Store.CreateUser(store.User{Email: a.name + "-member@example.com", CreatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Store.SetMembership(store.Membership{UserID: member.ID, AccountID: a.id, Role: store.UserMember}); err != nil {
			t.Fatal(err)
		}
		a.user = member.ID
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s-%d", a.name, i)
			srv := e.createServer(a.owner, map[string]any{"Name": name, "DeliveryType": "Live"})
			s := &isoServer{
				acct: a, srv: srv, token: srv.ApiTokens[0],
				rcpt: "to-" + name + "@example.net", nobody: "nobody-" + name + "@example.net",
				tag: "tag-" + name, subject: "subject-" + name,
			}
			from := "app@" + a.domain.Name
			s.message = e.Send(s.token, from, []string{s.rcpt, s.nobody}, fmt.Sprintf(
				"From: %s\nTo: %s, %s\nSubject: %s\nX-PM-Tag: %s\n\nHello from %s.\n", from, s.rcpt, s.nobody, s.subject, s.tag, name))
			a.servers = append(a.servers, s)
			w.servers = append(w.servers, s)
		}
	}
	for _, s := range w.servers {
		evs := e.WaitFinal(s.srv.ID, s.message)
		types := map[string]string{}
		for _, ev := range evs {
			types[ev.Recipient] = ev.Type
		}
		if types[s.rcpt] != store.EventDelivered || types[s.nobody] != store.EventBounced {
			t.Fatalf("%s: events %+v", s.name(), evs)
		}
		var l bounceList
		e.result(e.server(http.MethodGet, "/bounces?count=10&offset=0", s.token, nil)).into(&l)
		if l.TotalCount != 1 || l.Bounces[0].Email != s.nobody || !l.Bounces[0].Inactive {
			t.Fatalf("%s: bounces %+v", s.name(), l)
		}
		s.bounce = l.Bounces[0].ID
		hook, err := e.Store.CreateWebhook(store.Webhook{ServerID: s.srv.ID, URL: "https://hooks.example/" + s.name(), MessageStream: "outbound",
			Triggers: store.WebhookTriggers{Delivery: true}})
		if err != nil {
			t.Fatal(err)
		}
		s.webhook = hook.ID
		s.stream = "news-" + s.name()
		if err := e.Store.CreateStream(store.Stream{ServerID: s.srv.ID, ID: s.stream, Name: "News", Type: store.StreamBroadcasts, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	// Nonexistent IDs, checked to be so.
	for {
		w.missing = refs{
			server:   1<<40 + rand.Int64N(1<<40),
			prefix:   fmt.Sprintf("%08x", rand.Uint32()),
			domain:   1<<40 + rand.Int64N(1<<40),
			acctTok:  fmt.Sprintf("%08x", rand.Uint32()),
			account:  1<<40 + rand.Int64N(1<<40),
			message:  fmt.Sprintf("%08x-%04x-7%03x-8%03x-%012x", rand.Uint32(), rand.N(1<<16), rand.N(1<<12), rand.N(1<<12), rand.Int64N(1<<48)),
			bounceID: 1 + rand.Int64N(1<<53-1),
			webhook:  1<<40 + rand.Int64N(1<<40),
			stream:   fmt.Sprintf("missing-%08x", rand.Uint32()),
			report:   1<<40 + rand.Int64N(1<<40),
			user:     1<<40 + rand.Int64N(1<<40),
		}
		if !w.exists(w.missing) {
			return w
		}
	}
}

// exists says whether any of x's IDs names something.
func (w *isoWorld) exists(x refs) bool {
	if _, err := w.Store.Server(x.server); err == nil {
		return true
	}
	if _, err := w.Store.Domain(x.domain); err == nil {
		return true
	}
	if _, err := w.Store.Account(x.account); err == nil {
		return true
	}
	for _, s := range w.servers {
		if strings.HasPrefix(s.token, x.prefix) || strings.HasPrefix(s.token, x.acctTok) {
			return true
		}
		if _, err := w.Store.Message(s.srv.ID, x.message); err == nil {
			return true
		}
		if _, err := w.Store.Bounce(s.srv.ID, x.bounceID); err == nil {
			return true
		}
		if _, err := w.Store.Webhook(s.srv.ID, x.webhook); err == nil {
			return true
		}
		if _, err := w.Store.Stream(s.srv.ID, x.stream); err == nil {
			return true
		}
	}
	for _, a := range w.accounts {
		for _, tok := range []string{a.owner, a.admin} {
			if strings.HasPrefix(tok, x.prefix) || strings.HasPrefix(tok, x.acctTok) {
				return true
			}
		}
		if _, _, err := w.Store.DMARCReport(a.domain.ID, x.report); err == nil {
			return true
		}
		if x.user == a.user {
			return true
		}
	}
	return false
}

// serverIDs are the IDs of s's own things, as a server token names them.
func (s *isoServer) ids() refs {
	return refs{message: s.message, bounceID: s.bounce, webhook: s.webhook, stream: s.stream}
}

// accountIDs are the IDs of a's things; i picks a's server and which of
// its account tokens.
func (a *isoAccount) ids(i int) refs {
	s := a.servers[i]
	return refs{server: s.srv.ID, prefix: s.token[:8], domain: a.domain.ID, acctTok: []string{a.owner, a.admin}[i][:8], account: a.id, report: a.report, user: a.user}
}

// counts tallies the matrix's cases by kind, for the log.
type counts map[string]int

func (c counts) log(t *testing.T) {
	keys := make([]string, 0, len(c))
	total := 0
	for k, n := range c {
		keys = append(keys, k)
		total += n
	}
	slices.Sort(keys)
	for _, k := range keys {
		t.Logf("%4d %s", c[k], k)
	}
	t.Logf("%4d cases in all", total)
}

// sameAnswer checks that a request about another principal's thing got
// exactly the answer of one about a thing that does not exist: a 404,
// byte for byte the same.
func sameAnswer(t *testing.T, what string, gotStatus int, got []byte, wantStatus int, want []byte) {
	t.Helper()
	if wantStatus != http.StatusNotFound {
		t.Errorf("%s: the missing ID answers %d %s, want 404", what, wantStatus, want)
		return
	}
	if gotStatus != wantStatus || !bytes.Equal(got, want) {
		t.Errorf("%s: answers %d %s\na missing ID answers %d %s", what, gotStatus, got, wantStatus, want)
	}
}

// noSecrets checks that an answer holds none of another's secrets.
func noSecrets(t *testing.T, what string, body []byte, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(string(body), s) {
			t.Errorf("%s shows %q, which is another's: %s", what, s, body)
		}
	}
}

// unknownEndpoint is the answer to method and path when no such endpoint
// exists, taken from a path that exists in no version of the API.
func (w *isoWorld) unknownEndpoint(t *testing.T, method, path, header, token string, body any) (int, []byte) {
	t.Helper()
	const nowhere = "/no-such-endpoint-anywhere"
	status, data := w.do(method, nowhere, header, token, body)
	if status != http.StatusNotFound || !bytes.Contains(data, []byte(nowhere)) {
		t.Fatalf("%s %s: %d %s", method, nowhere, status, data)
	}
	// The answer names the path asked for, as unknown paths' do.
	p, _, _ := strings.Cut(path, "?")
	return status, bytes.Replace(data, []byte(nowhere), []byte(p), 1)
}

func TestIsolationMatrix(t *testing.T) {
	w := newIsoWorld(t)
	n := counts{}
	endpoints := isolationEndpoints()
	op, cust := w.accounts[0], w.accounts[1]

	// A snapshot of what nothing in the matrix may change.
	domainsBefore := map[int64]string{}
	for _, a := range w.accounts {
		domainsBefore[a.domain.ID] = fmt.Sprint(domainInStore(t, w.Store, a.domain.ID))
	}
	serversBefore := func() map[int64]store.Server {
		out := map[int64]store.Server{}
		for _, s := range w.servers {
			srv, err := w.Store.Server(s.srv.ID)
			if err != nil {
				t.Fatal(err)
			}
			out[s.srv.ID] = srv
		}
		return out
	}

	t.Run("wrong kind of token", func(t *testing.T) {
		// An account token is no server token and the reverse, on every
		// endpoint: 401 with ErrorCode 10, whatever the IDs.
		for _, ep := range endpoints {
			if ep.level == public {
				continue
			}
			for _, s := range w.servers {
				a := s.acct
				// The caller's own IDs, so that nothing but the token
				// can be wrong.
				x := a.ids(slices.Index(a.servers, s))
				x.message, x.bounceID, x.webhook, x.stream = s.message, s.bounce, s.webhook, s.stream
				var tries []struct{ header, token string }
				if ep.level == serverLevel {
					tries = append(tries,
						struct{ header, token string }{serverHeader, a.owner},
						struct{ header, token string }{serverHeader, a.admin},
						struct{ header, token string }{accountHeader, s.token},
						struct{ header, token string }{serverHeader, ""})
				} else {
					tries = append(tries,
						struct{ header, token string }{accountHeader, s.token},
						struct{ header, token string }{serverHeader, a.owner},
						struct{ header, token string }{accountHeader, ""})
				}
				for _, try := range tries {
					status, body := w.do(ep.method(), ep.path(x), try.header, try.token, ep.body)
					what := fmt.Sprintf("%s with %s in %s", ep.pattern, tokenKind(w, try.token), try.header)
					if ep.level == hiddenOperator {
						wantStatus, want := w.unknownEndpoint(t, ep.method(), ep.path(x), try.header, try.token, ep.body)
						if status != wantStatus || !bytes.Equal(body, want) {
							t.Errorf("%s: %d %s, an unknown path answers %d %s", what, status, body, wantStatus, want)
						}
						n["hidden operator endpoints: wrong kind of token answers as an unknown path"]++
						continue
					}
					var e api.Error
					if json.Unmarshal(body, &e) != nil || status != http.StatusUnauthorized || e.ErrorCode != 10 {
						t.Errorf("%s: %d %s, want 401 with ErrorCode 10", what, status, body)
					}
					n["401: wrong kind of token (endpoint × token × header)"]++
				}
			}
		}
	})

	t.Run("server level, another server's IDs", func(t *testing.T) {
		for _, ep := range endpoints {
			if ep.level != serverLevel || !ep.byID() {
				continue
			}
			for _, victim := range w.servers {
				if ep.safe() { // the IDs are real: their own server sees them
					status, body := w.server(ep.method(), ep.path(victim.ids()), victim.token, ep.body)
					if status != http.StatusOK {
						t.Fatalf("%s with %s's own token: %d %s", ep.pattern, victim.name(), status, body)
					}
				}
				for _, caller := range w.servers {
					if caller == victim {
						continue
					}
					wantStatus, want := w.server(ep.method(), ep.path(w.missing), caller.token, ep.body)
					status, body := w.server(ep.method(), ep.path(victim.ids()), caller.token, ep.body)
					sameAnswer(t, fmt.Sprintf("%s: %s's token with %s's IDs", ep.pattern, caller.name(), victim.name()), status, body, wantStatus, want)
					n["server level: another server's IDs (endpoint × caller × victim)"]++
				}
			}
		}
		// Nobody reactivated another's bounce.
		for _, s := range w.servers {
			if b, err := w.Store.Bounce(s.srv.ID, s.bounce); err != nil || !b.Inactive {
				t.Errorf("%s's bounce: %+v, %v", s.name(), b, err)
			}
		}
	})

	t.Run("server level, own data only", func(t *testing.T) {
		colors := []string{"Blue", "Turquoise", "Green", "Red"}
		for i, s := range w.servers {
			var others []string
			for _, o := range w.servers {
				if o != s {
					others = append(others, o.secrets()...)
				}
			}
			for _, ep := range endpoints {
				if ep.level != serverLevel || ep.byID() {
					continue
				}
				before := serversBefore()
				body := ep.body
				if ep.pattern == "PUT /server" {
					body = map[string]any{"Color": colors[i]}
				}
				status, data := w.server(ep.method(), ep.path(s.ids()), s.token, body)
				if status != http.StatusOK {
					t.Fatalf("%s with %s's token: %d %s", ep.pattern, s.name(), status, data)
				}
				noSecrets(t, ep.pattern+" for "+s.name(), data, others)
				n["server level: own listings hold no other server's data (endpoint × server)"]++
				w.checkOwnListing(t, ep.pattern, s, data, colors[i])
				after := serversBefore()
				for id, srv := range after {
					if id != s.srv.ID && fmt.Sprint(srv) != fmt.Sprint(before[id]) {
						t.Errorf("%s with %s's token changed server %d: %+v", ep.pattern, s.name(), id, srv)
					}
				}
			}
			// Filters naming another server's things find nothing.
			for _, o := range w.servers {
				if o == s {
					continue
				}
				for _, q := range []string{
					"/messages/outbound?count=500&offset=0&recipient=" + o.rcpt,
					"/messages/outbound?count=500&offset=0&tag=" + o.tag,
					"/messages/outbound?count=500&offset=0&subject=" + o.subject,
					"/bounces?count=500&offset=0&emailFilter=" + o.nobody,
					"/bounces?count=500&offset=0&messageID=" + o.message,
					"/bounces?count=500&offset=0&tag=" + o.tag,
				} {
					var l struct{ TotalCount int }
					w.result(w.server(http.MethodGet, q, s.token, nil)).into(&l)
					if l.TotalCount != 0 {
						t.Errorf("%s for %s finds %d", q, s.name(), l.TotalCount)
					}
					n["server level: filters naming another server's data (filter × server × other)"]++
				}
				for _, p := range []string{"/stats/outbound", "/stats/outbound/sends", "/stats/outbound/bounces"} {
					var st struct{ Sent, Bounced, HardBounce int64 }
					w.result(w.server(http.MethodGet, p+"?tag="+o.tag, s.token, nil)).into(&st)
					if st != (struct{ Sent, Bounced, HardBounce int64 }{}) {
						t.Errorf("%s?tag=%s for %s: %+v", p, o.tag, s.name(), st)
					}
					n["server level: filters naming another server's data (filter × server × other)"]++
				}
			}
		}
	})

	t.Run("account level, another account's IDs", func(t *testing.T) {
		for _, ep := range endpoints {
			if ep.level != accountLevel || !ep.byID() {
				continue
			}
			for _, victim := range w.accounts {
				for i := range victim.servers {
					vx := victim.ids(i)
					if ep.safe() {
						status, body := w.account(ep.method(), ep.path(vx), victim.owner, ep.body)
						if status != http.StatusOK {
							t.Fatalf("%s with %s's own token: %d %s", ep.pattern, victim.name, status, body)
						}
					}
					for _, caller := range w.accounts {
						if caller == victim {
							continue
						}
						for _, tok := range []string{caller.owner, caller.admin} {
							role := map[bool]string{true: "owner", false: "admin"}[tok == caller.owner]
							bodies := []any{ep.body}
							if m := ep.method(); m == http.MethodPut || m == http.MethodPost {
								bodies = append(bodies, []byte("{not json"))
							}
							for _, body := range bodies {
								wantStatus, want := w.account(ep.method(), ep.path(w.missing), tok, body)
								status, got := w.account(ep.method(), ep.path(vx), tok, body)
								sameAnswer(t, fmt.Sprintf("%s: %s's %s token with %s's IDs (body %s)", ep.pattern, caller.name, role, victim.name, bodyKind(body)), status, got, wantStatus, want)
								n["account level: another account's IDs (endpoint × caller token × victim ID × body)"]++
							}
							if strings.Contains(ep.pattern, "{prefix}") && strings.Contains(ep.pattern, "{id}") {
								// One's own server with another's token prefix.
								own := caller.ids(i)
								mixed, missing := own, own
								mixed.prefix, missing.prefix = vx.prefix, w.missing.prefix
								wantStatus, want := w.account(ep.method(), ep.path(missing), tok, ep.body)
								status, got := w.account(ep.method(), ep.path(mixed), tok, ep.body)
								sameAnswer(t, fmt.Sprintf("%s: %s's %s token, its own server, %s's token prefix", ep.pattern, caller.name, role, victim.name), status, got, wantStatus, want)
								n["account level: own server with another account's token prefix (caller token × victim prefix)"]++
							}
						}
					}
				}
			}
		}
	})

	t.Run("account level, own data only", func(t *testing.T) {
		for _, a := range w.accounts {
			var others []string
			for _, o := range w.accounts {
				if o != a {
					others = append(others, o.secrets()...)
				}
			}
			for _, tok := range []string{a.owner, a.admin} {
				for _, ep := range endpoints {
					if ep.level != accountLevel || ep.byID() || !ep.safe() {
						continue
					}
					status, data := w.account(ep.method(), ep.path(a.ids(0)), tok, ep.body)
					if status != http.StatusOK {
						t.Fatalf("%s with %s's token: %d %s", ep.pattern, a.name, status, data)
					}
					noSecrets(t, ep.pattern+" for "+a.name, data, others)
					w.checkAccountListing(t, ep.pattern, a, data)
					n["account level: own listings hold no other account's data (endpoint × token)"]++
				}
				for _, s := range a.servers {
					status, data := w.account(http.MethodGet, fmt.Sprintf("/servers/%d/tokens", s.srv.ID), tok, nil)
					if status != http.StatusOK {
						t.Fatalf("%s's tokens: %d %s", s.name(), status, data)
					}
					var others []string
					for _, o := range w.servers {
						if o != s {
							others = append(others, o.token[:8])
						}
					}
					noSecrets(t, "the tokens of "+s.name(), data, append(others, a.owner[:8], a.admin[:8]))
					n["account level: own listings hold no other account's data (endpoint × token)"]++
				}
				// A name filter naming another account's server finds none.
				for _, o := range w.accounts {
					if o == a {
						continue
					}
					for _, s := range o.servers {
						var l api.ServerList
						w.result(w.account(http.MethodGet, "/servers?count=500&offset=0&name="+s.name(), tok, nil)).into(&l)
						if l.TotalCount != 0 {
							t.Errorf("%s finds %s by name: %+v", a.name, s.name(), l)
						}
						n["account level: filters naming another account's data"]++
					}
				}
			}
		}
	})

	t.Run("account level, creating", func(t *testing.T) {
		// Another account's server name is free in this one: a taken
		// name would say that it exists.
		for _, a := range w.accounts {
			for _, o := range w.accounts {
				if o == a {
					continue
				}
				srv := w.createServer(a.admin, map[string]any{"Name": o.servers[0].name(), "DeliveryType": "Sandbox"})
				// Only an owner may delete it; the other account's owner
				// does not find it.
				path := fmt.Sprintf("/servers/%d", srv.ID)
				status, body := w.account(http.MethodDelete, path, a.admin, nil)
				wantError(t, status, body, http.StatusUnprocessableEntity, 604)
				if status, body := w.server(http.MethodGet, "/server", srv.ApiTokens[0], nil); status != http.StatusOK {
					t.Fatalf("after an admin's DELETE: %d %s", status, body)
				}
				wantStatus, want := w.account(http.MethodDelete, fmt.Sprintf("/servers/%d", w.missing.server), o.owner, nil)
				status, body = w.account(http.MethodDelete, path, o.owner, nil)
				sameAnswer(t, "DELETE /servers/{id} with another account's owner token", status, body, wantStatus, want)
				var res api.Error
				w.result(w.account(http.MethodDelete, path, a.owner, nil)).into(&res)
				status, body = w.account(http.MethodGet, path, a.owner, nil)
				wantError(t, status, body, http.StatusNotFound, 601)
				n["admin versus owner on DELETE /servers/{id} (admin, other owner, owner)"] += 3
			}
		}
		// A domain name another account has proven in DNS is taken, and
		// the answer says no more than one's own account would be told.
		// (One not proven can be claimed: TestDomainClaimOverAPI.)
		for _, a := range w.accounts {
			d, err := w.Store.Domain(a.domain.ID)
			if err != nil {
				t.Fatal(err)
			}
			d.DKIMVerified = true
			if err := w.Store.UpdateDomain(d); err != nil {
				t.Fatal(err)
			}
			domainsBefore[a.domain.ID] = fmt.Sprint(domainInStore(t, w.Store, a.domain.ID))
		}
		for _, a := range w.accounts {
			for _, o := range w.accounts {
				if o == a {
					continue
				}
				for _, p := range []string{"/domains", "/domains/"} {
					wantStatus, want := w.account(http.MethodPost, p, o.owner, map[string]any{"Name": o.domain.Name})
					status, got := w.account(http.MethodPost, p, a.owner, map[string]any{"Name": o.domain.Name})
					wantError(t, status, got, http.StatusUnprocessableEntity, 512)
					if status != wantStatus || !bytes.Equal(got, want) {
						t.Errorf("POST %s with another account's domain: %d %s, its own account gets %d %s", p, status, got, wantStatus, want)
					}
					n["POST /domains with another account's domain name"]++
				}
			}
		}
		// A new account token is the caller's account's.
		for _, a := range w.accounts {
			var tok api.NewTokenInfo
			w.result(w.account(http.MethodPost, "/account/tokens", a.owner, map[string]any{"Role": "admin"})).into(&tok)
			for _, o := range w.accounts {
				_, body := w.account(http.MethodGet, "/account/tokens", o.owner, nil)
				if listed := bytes.Contains(body, []byte(tok.Prefix)); listed != (o == a) {
					t.Errorf("%s's new token listed by %s: %v", a.name, o.name, listed)
				}
			}
			var res api.Error
			w.result(w.account(http.MethodDelete, "/account/tokens/"+tok.Prefix, a.owner, nil)).into(&res)
			n["POST /account/tokens lands in the caller's account"]++
		}
	})

	t.Run("operator endpoints", func(t *testing.T) {
		// The operator's owner token reaches them ...
		var l api.AccountList
		w.result(w.account(http.MethodGet, "/accounts", op.owner, nil)).into(&l)
		if l.TotalCount != 2 {
			t.Fatalf("accounts %+v", l)
		}
		// ... and no other account token learns that they exist: the
		// answer is an unknown path's, whatever the body or IDs.
		for _, ep := range endpoints {
			if ep.level != operatorOnly && ep.level != hiddenOperator {
				continue
			}
			for _, tok := range []string{cust.owner, cust.admin, op.admin} {
				for _, x := range []refs{op.ids(0), cust.ids(0), w.missing} {
					for _, body := range []any{ep.body, []byte("{not json"), nil} {
						wantStatus, want := w.unknownEndpoint(t, ep.method(), ep.path(x), accountHeader, tok, body)
						status, got := w.account(ep.method(), ep.path(x), tok, body)
						if status != wantStatus || !bytes.Equal(got, want) {
							t.Errorf("%s %s with %s (body %s): %d %s, an unknown path answers %d %s", ep.method(), ep.path(x), tokenKind(w, tok), bodyKind(body), status, got, wantStatus, want)
						}
						n["operator endpoints answer non-operators as unknown paths (endpoint × token × IDs × body)"]++
					}
				}
			}
		}
		if _, err := w.Store.Account(cust.id); err != nil {
			t.Fatalf("the customer account: %v", err)
		}
	})

	// Nothing above changed what it must not.
	for _, a := range w.accounts {
		if got := fmt.Sprint(domainInStore(t, w.Store, a.domain.ID)); got != domainsBefore[a.domain.ID] {
			t.Errorf("the domain %s changed:\n%s\n%s", a.domain.Name, domainsBefore[a.domain.ID], got)
		}
		for _, tok := range []string{a.owner, a.admin} {
			if status, body := w.account(http.MethodGet, "/account/tokens", tok, nil); status != http.StatusOK {
				t.Errorf("an account token of %s stopped working: %d %s", a.name, status, body)
			}
		}
	}
	for _, s := range w.servers {
		var got api.Server
		w.result(w.server(http.MethodGet, "/server", s.token, nil)).into(&got)
		if got.ID != s.srv.ID || got.Name != s.name() || len(got.ApiTokens) != 1 {
			t.Errorf("%s: %+v", s.name(), got)
		}
	}
	n.log(t)
}

// checkOwnListing checks a server-level answer without IDs: it is about
// server s, which has one message with one bounce.
func (w *isoWorld) checkOwnListing(t *testing.T, pattern string, s *isoServer, data []byte, color string) {
	t.Helper()
	switch pattern {
	case "GET /server", "PUT /server":
		var got api.Server
		decodeInto(t, http.StatusOK, data, &got)
		if got.ID != s.srv.ID || got.Name != s.name() || (pattern == "PUT /server" && got.Color != color) {
			t.Errorf("%s for %s: %+v", pattern, s.name(), got)
		}
	case "GET /messages/outbound":
		var l messageList
		decodeInto(t, http.StatusOK, data, &l)
		if l.TotalCount != 1 || len(l.Messages) != 1 || l.Messages[0].MessageID != s.message {
			t.Errorf("%s for %s: %+v", pattern, s.name(), l)
		}
	case "GET /bounces":
		var l bounceList
		decodeInto(t, http.StatusOK, data, &l)
		if l.TotalCount != 1 || len(l.Bounces) != 1 || l.Bounces[0].ID != s.bounce || l.Bounces[0].ServerID != s.srv.ID {
			t.Errorf("%s for %s: %+v", pattern, s.name(), l)
		}
	case "GET /deliverystats":
		var d struct {
			InactiveMails int
			Bounces       []struct {
				Name  string
				Count int
			}
		}
		decodeInto(t, http.StatusOK, data, &d)
		if d.InactiveMails != 1 || len(d.Bounces) == 0 || d.Bounces[0].Name != "All" || d.Bounces[0].Count != 1 {
			t.Errorf("%s for %s: %+v", pattern, s.name(), d)
		}
	case "GET /stats/outbound", "GET /stats/outbound/sends", "GET /stats/outbound/bounces":
		// Every message of s has its tag: the stats for the tag are
		// all the stats, and they count something.
		path := "/stats/outbound" + strings.TrimPrefix(pattern, "GET /stats/outbound")
		_, tagged := w.server(http.MethodGet, path+"?tag="+s.tag, s.token, nil)
		if !bytes.Equal(data, tagged) {
			t.Errorf("%s for %s: %s, yet for its own tag %s", pattern, s.name(), data, tagged)
		}
		var st struct{ Sent, Bounced, HardBounce int64 }
		decodeInto(t, http.StatusOK, data, &st)
		if st.Sent+st.Bounced+st.HardBounce == 0 || st.Sent > 1 || st.Bounced > 1 || st.HardBounce > 1 {
			t.Errorf("%s for %s: %s", pattern, s.name(), data)
		}
	case "GET /webhooks":
		var l api.WebhookList
		decodeInto(t, http.StatusOK, data, &l)
		if len(l.Webhooks) != 1 || l.Webhooks[0].ID != s.webhook || l.Webhooks[0].Url != "https://hooks.example/"+s.name() {
			t.Errorf("%s for %s: %s", pattern, s.name(), data)
		}
	case "GET /message-streams":
		var l api.MessageStreamList
		decodeInto(t, http.StatusOK, data, &l)
		if l.TotalCount != 2 || l.MessageStreams[0].ID != "outbound" || l.MessageStreams[1].ID != s.stream {
			t.Errorf("%s for %s: %s", pattern, s.name(), data)
		}
	case "POST /message-streams":
		var st api.MessageStream
		decodeInto(t, http.StatusOK, data, &st)
		if got, err := w.Store.Stream(s.srv.ID, "created"); err != nil || st.ServerID != s.srv.ID || got.ServerID != s.srv.ID {
			t.Errorf("%s for %s: %s: %+v, %v", pattern, s.name(), data, got, err)
		}
	case "POST /webhooks":
		var h api.Webhook
		decodeInto(t, http.StatusOK, data, &h)
		if got, err := w.Store.Webhook(s.srv.ID, h.ID); err != nil || got.ServerID != s.srv.ID || h.Secret == "" {
			t.Errorf("%s for %s: %s: %+v, %v", pattern, s.name(), data, got, err)
		}
	case "POST /email":
		var r api.EmailResponse
		decodeInto(t, http.StatusOK, data, &r)
		if r.ErrorCode != 0 || r.MessageID == "" {
			t.Errorf("%s for %s: %s", pattern, s.name(), data)
		}
		if m, err := w.Store.Message(s.srv.ID, r.MessageID); err != nil || m.ServerID != s.srv.ID {
			t.Errorf("%s for %s: the message is not the server's: %+v, %v", pattern, s.name(), m, err)
		}
	case "POST /email/batch":
		var rs []api.EmailResponse
		decodeInto(t, http.StatusOK, data, &rs)
		for _, r := range rs {
			if m, err := w.Store.Message(s.srv.ID, r.MessageID); r.ErrorCode != 0 || err != nil || m.ServerID != s.srv.ID {
				t.Errorf("%s for %s: %+v: %+v, %v", pattern, s.name(), r, m, err)
			}
		}
		if len(rs) != 2 {
			t.Errorf("%s for %s: %d answers, want 2", pattern, s.name(), len(rs))
		}
	default:
		t.Errorf("%s: no check of its answer (add one to checkOwnListing)", pattern)
	}
}

// checkAccountListing checks an account-level listing of account a.
func (w *isoWorld) checkAccountListing(t *testing.T, pattern string, a *isoAccount, data []byte) {
	t.Helper()
	switch pattern {
	case "GET /users":
		var l api.UserList
		decodeInto(t, http.StatusOK, data, &l)
		// The account's own member, and in the operator's account the
		// owner that initialisation made.
		var got []string
		for _, u := range l.Users {
			got = append(got, fmt.Sprintf("%d/%s", u.ID, u.Role))
		}
		want := []string{fmt.Sprintf("%d/Member", a.user)}
		if a.id == w.Inst.AccountID {
			want = []string{"1/Owner", want[0]}
		}
		if l.TotalCount != len(want) || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s for %s: %s, want %v", pattern, a.name, data, want)
		}
	case "GET /servers":
		var l api.ServerList
		decodeInto(t, http.StatusOK, data, &l)
		want := []int64{}
		for _, s := range a.servers {
			want = append(want, s.srv.ID)
		}
		if a.id == w.Inst.AccountID {
			want = append(want, w.Inst.ServerID)
		}
		var got []int64
		for _, s := range l.Servers {
			got = append(got, s.ID)
		}
		slices.Sort(want)
		slices.Sort(got)
		if l.TotalCount != len(want) || !slices.Equal(got, want) {
			t.Errorf("%s for %s: servers %v, want %v", pattern, a.name, got, want)
		}
	case "GET /domains", "GET /domains/{$}":
		var l api.DomainList
		decodeInto(t, http.StatusOK, data, &l)
		if l.TotalCount != 1 || len(l.Domains) != 1 || l.Domains[0].ID != a.domain.ID {
			t.Errorf("%s for %s: %+v", pattern, a.name, l)
		}
	case "GET /account/tokens":
		var l api.TokenList
		decodeInto(t, http.StatusOK, data, &l)
		var got []string
		for _, tok := range l.Tokens {
			got = append(got, tok.Prefix)
		}
		slices.Sort(got)
		want := []string{a.owner[:8], a.admin[:8]}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s for %s: %v, want %v", pattern, a.name, got, want)
		}
	default:
		t.Errorf("%s: no check of its answer (add one to checkAccountListing)", pattern)
	}
}

// tokenKind names a token for messages, never showing it.
func tokenKind(w *isoWorld, tok string) string {
	if tok == "" {
		return "no token"
	}
	for _, a := range w.accounts {
		switch tok {
		case a.owner:
			return a.name + "'s owner token"
		case a.admin:
			return a.name + "'s admin token"
		}
		for _, s := range a.servers {
			if tok == s.token {
				return s.name() + "'s server token"
			}
		}
	}
	return "a token"
}

func bodyKind(body any) string {
	switch b := body.(type) {
	case nil:
		return "none"
	case []byte:
		return fmt.Sprintf("%q", b)
	}
	data, _ := json.Marshal(body)
	return string(data)
}
