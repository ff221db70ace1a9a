package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// decoded is an answer to decode.
type decoded struct {
	t      testing.TB
	status int
	body   []byte
}

// result holds an answer for into: e.result(e.account(…)).into(&v).
func (e *env) result(status int, body []byte) decoded { return decoded{e.T, status, body} }

func (d decoded) into(v any) {
	d.t.Helper()
	decodeInto(d.t, d.status, d.body, v)
}

// createServer creates a server over HTTP with the account token and
// returns it (ApiTokens holding its token in full).
func (e *env) createServer(token string, body any) api.Server {
	e.T.Helper()
	var srv api.Server
	e.result(e.account(http.MethodPost, "/servers", token, body)).into(&srv)
	return srv
}

// authError tries SMTP AUTH with token and returns the SMTP error (nil if
// AUTH succeeded).
func (e *env) authError(token string) *smtp.SMTPError {
	e.T.Helper()
	c, err := smtp.Dial(e.SMTP)
	if err != nil {
		e.T.Fatal(err)
	}
	defer c.Close()
	err = c.Auth(sasl.NewPlainClient("", token, token))
	if err == nil {
		c.Quit()
		return nil
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		e.T.Fatalf("AUTH: %v", err)
	}
	return se
}

func wantAuthRefused(t *testing.T, e *env, token, why string) {
	t.Helper()
	se := e.authError(token)
	if se == nil || se.Code != 535 {
		t.Fatalf("%s: SMTP AUTH answered %v, want 535", why, se)
	}
}

func TestServerCreateAndGet(t *testing.T) {
	e := newEnv(t, envOptions{})
	body := map[string]any{
		"Name":                       "acme-production",
		"Color":                      "turquoise",
		"SmtpApiActivated":           false,
		"RawEmailEnabled":            true,
		"DeliveryType":               "sandbox",
		"InboundDomain":              "Inbound.Example.com.",
		"InboundSpamThreshold":       5,
		"InboundHookUrl":             "https://hooks.example.com/inbound",
		"BounceHookUrl":              "https://hooks.example.com/bounce",
		"OpenHookUrl":                "http://hooks.example.com/open",
		"DeliveryHookUrl":            "https://hooks.example.com:8443/delivery?x=1",
		"ClickHookUrl":               "https://hooks.example.com/click",
		"PostFirstOpenOnly":          true,
		"TrackOpens":                 true,
		"TrackLinks":                 "htmlonly",
		"IncludeBounceContentInHook": true,
		"EnableSmtpApiErrorHooks":    true,
		"Pinned":                     true,
		"SomethingUnknown":           "ignored",
	}
	status, data := e.account(http.MethodPost, "/servers", e.Inst.AccountToken, body)
	golden(t, "server_create", data)
	var srv api.Server
	decodeInto(t, status, data, &srv)
	want := api.Server{
		ID:                         srv.ID,
		Name:                       "acme-production",
		ApiTokens:                  srv.ApiTokens,
		ServerLink:                 fmt.Sprintf("http://postern.test/servers/%d", srv.ID),
		Color:                      "Turquoise",
		SmtpApiActivated:           false,
		RawEmailEnabled:            true,
		DeliveryType:               "Sandbox",
		InboundAddress:             srv.InboundHash + "@inbound.example.com",
		InboundHash:                srv.InboundHash,
		InboundDomain:              "inbound.example.com",
		InboundSpamThreshold:       5,
		InboundHookUrl:             "https://hooks.example.com/inbound",
		BounceHookUrl:              "https://hooks.example.com/bounce",
		OpenHookUrl:                "http://hooks.example.com/open",
		DeliveryHookUrl:            "https://hooks.example.com:8443/delivery?x=1",
		ClickHookUrl:               "https://hooks.example.com/click",
		PostFirstOpenOnly:          true,
		TrackOpens:                 true,
		TrackLinks:                 "HtmlOnly",
		IncludeBounceContentInHook: true,
		EnableSmtpApiErrorHooks:    true,
		Pinned:                     true,
		RetentionDays:              45,
	}
	if fmt.Sprint(srv) != fmt.Sprint(want) {
		t.Fatalf("created:\n got %+v\nwant %+v", srv, want)
	}
	if srv.ID == e.Inst.ServerID || len(srv.InboundHash) != 32 {
		t.Fatalf("ID %d, InboundHash %q", srv.ID, srv.InboundHash)
	}
	// The token in full, there only: it works for the server-level API.
	if len(srv.ApiTokens) != 1 || len(srv.ApiTokens[0]) != 36 {
		t.Fatalf("ApiTokens %q: want the one new token in full", srv.ApiTokens)
	}
	token := srv.ApiTokens[0]
	var own api.Server
	e.result(e.server(http.MethodGet, "/server", token, nil)).into(&own)
	if own.ID != srv.ID {
		t.Fatalf("GET /server with the new token: server %d, want %d", own.ID, srv.ID)
	}

	// GET /servers/{id}: the same object, the token masked.
	status, data = e.account(http.MethodGet, fmt.Sprintf("/servers/%d", srv.ID), e.Inst.AccountToken, nil)
	golden(t, "server", data)
	var got api.Server
	decodeInto(t, status, data, &got)
	want.ApiTokens = []string{auth.Mask(token[:8])}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GET:\n got %+v\nwant %+v", got, want)
	}
	if strings.Contains(string(data), token) {
		t.Fatal("GET /servers/{id} shows the token in full")
	}

	// Only Name is required; the defaults are Postmark's.
	minimal := e.createServer(e.Inst.AccountToken, map[string]any{"Name": "minimal"})
	if minimal.Color != "Purple" || minimal.DeliveryType != "Live" || !minimal.SmtpApiActivated || minimal.TrackLinks != "None" ||
		minimal.Pinned || minimal.TrackOpens || minimal.RawEmailEnabled || minimal.InboundDomain != "" || minimal.BounceHookUrl != "" ||
		minimal.InboundAddress != minimal.InboundHash+"@inbound.postern.test" {
		t.Fatalf("defaults: %+v", minimal)
	}
}

func TestServerValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	e.createServer(tok, map[string]any{"Name": "Taken"})
	long := strings.Repeat("x", 101)
	for _, tc := range []struct {
		name string
		body any
		code int
	}{
		{"no name", map[string]any{"Color": "Red"}, 608},
		{"empty name", map[string]any{"Name": "  "}, 608},
		{"long name", map[string]any{"Name": long}, 608},
		{"control character", map[string]any{"Name": "a\nb"}, 608},
		{"duplicate name", map[string]any{"Name": "taken"}, 603},
		{"duplicate of the init server", map[string]any{"Name": "DEFAULT"}, 603},
		{"color", map[string]any{"Name": "x", "Color": "Magenta"}, 607},
		{"delivery type", map[string]any{"Name": "x", "DeliveryType": "Test"}, 613},
		{"hook ftp", map[string]any{"Name": "x", "BounceHookUrl": "ftp://hooks.example.com/"}, 606},
		{"hook relative", map[string]any{"Name": "x", "DeliveryHookUrl": "/hooks"}, 606},
		{"hook no host", map[string]any{"Name": "x", "OpenHookUrl": "https:///path"}, 606},
		{"hook words", map[string]any{"Name": "x", "ClickHookUrl": "not a url"}, 606},
		{"hook inbound", map[string]any{"Name": "x", "InboundHookUrl": "mailto:a@example.com"}, 606},
		{"track links", map[string]any{"Name": "x", "TrackLinks": "Always"}, 403},
		{"spam threshold", map[string]any{"Name": "x", "InboundSpamThreshold": 31}, 403},
		{"inbound domain", map[string]any{"Name": "x", "InboundDomain": "not a domain"}, 403},
		{"wrong type", map[string]any{"Name": 5}, 402},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.account(http.MethodPost, "/servers", tok, tc.body)
			wantError(t, status, body, http.StatusUnprocessableEntity, tc.code)
		})
	}
	// Malformed JSON, and no JSON content type.
	status, body := e.account(http.MethodPost, "/servers", tok, []byte(`{"Name":`))
	wantError(t, status, body, http.StatusUnprocessableEntity, 402)
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/servers", strings.NewReader(`{"Name":"x"}`))
	req.Header.Set(accountHeader, tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var apiErr api.Error
	json.NewDecoder(resp.Body).Decode(&apiErr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || apiErr.ErrorCode != 409 {
		t.Fatalf("text/plain body: %d %+v", resp.StatusCode, apiErr)
	}
	// Nothing was created by the refused requests.
	var list api.ServerList
	e.result(e.account(http.MethodGet, "/servers?count=500&offset=0", tok, nil)).into(&list)
	if list.TotalCount != 2 {
		t.Fatalf("%d servers after refused creations, want 2", list.TotalCount)
	}
}

func TestServerEdit(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	srv := e.createServer(tok, map[string]any{"Name": "staging", "Color": "Red", "BounceHookUrl": "https://h.example.com/b"})
	path := fmt.Sprintf("/servers/%d", srv.ID)

	// A field left out keeps its value; DeliveryType may be sent unchanged;
	// read-only fields are ignored.
	var got api.Server
	status, data := e.account(http.MethodPut, path, tok, map[string]any{
		"Name": "Staging EU", "Color": "blue", "Pinned": true, "TrackLinks": "HtmlAndText", "TrackOpens": true,
		"DeliveryType": "live", "SmtpApiActivated": false, "ID": 999, "InboundHash": "forged",
	})
	golden(t, "server_edit", data)
	decodeInto(t, status, data, &got)
	if got.ID != srv.ID || got.Name != "Staging EU" || got.Color != "Blue" || !got.Pinned || got.TrackLinks != "HtmlAndText" ||
		!got.TrackOpens || got.SmtpApiActivated || got.BounceHookUrl != "https://h.example.com/b" || got.DeliveryType != "Live" ||
		got.InboundHash != srv.InboundHash {
		t.Fatalf("after PUT: %+v", got)
	}
	if len(got.ApiTokens) != 1 || got.ApiTokens[0] != auth.Mask(srv.ApiTokens[0][:8]) {
		t.Fatalf("ApiTokens after PUT: %q", got.ApiTokens)
	}
	// An empty URL clears a hook.
	e.result(e.account(http.MethodPut, path, tok, map[string]any{"BounceHookUrl": ""})).into(&got)
	if got.BounceHookUrl != "" || got.Name != "Staging EU" {
		t.Fatalf("clearing the hook: %+v", got)
	}
	// Renaming to its own name in another case is fine.
	e.result(e.account(http.MethodPut, path, tok, map[string]any{"Name": "STAGING EU"})).into(&got)
	if got.Name != "STAGING EU" {
		t.Fatalf("rename: %+v", got)
	}

	for _, tc := range []struct {
		name string
		body any
		code int
	}{
		{"DeliveryType change", map[string]any{"DeliveryType": "Sandbox"}, 613},
		{"DeliveryType invalid", map[string]any{"DeliveryType": "Nope"}, 613},
		{"duplicate name", map[string]any{"Name": "default"}, 603},
		{"empty name", map[string]any{"Name": ""}, 608},
		{"color", map[string]any{"Color": "Black"}, 607},
		{"hook", map[string]any{"ClickHookUrl": "javascript:alert(1)"}, 606},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.account(http.MethodPut, path, tok, tc.body)
			wantError(t, status, body, http.StatusUnprocessableEntity, tc.code)
		})
	}
	stored, err := e.Store.Server(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Name != "STAGING EU" || stored.DeliveryType != store.DeliveryLive || stored.Color != "Blue" {
		t.Fatalf("refused edits changed the server: %+v", stored)
	}
	// A missing server, and a path ID that is not a number.
	for _, p := range []string{"/servers/9999", "/servers/abc", "/servers/0"} {
		status, body := e.account(http.MethodPut, p, tok, map[string]any{"Name": "x"})
		wantError(t, status, body, http.StatusNotFound, 601)
	}
}

func TestServersList(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	for _, s := range []struct {
		name   string
		pinned bool
	}{{"beta-staging", false}, {"Alpha-production", false}, {"gamma-production", true}, {"Zulu", true}, {"delta", false}} {
		e.createServer(tok, map[string]any{"Name": s.name, "Pinned": s.pinned})
	}
	names := func(l api.ServerList) []string {
		var out []string
		for _, s := range l.Servers {
			out = append(out, s.Name)
		}
		return out
	}
	list := func(query string) api.ServerList {
		t.Helper()
		var l api.ServerList
		e.result(e.account(http.MethodGet, "/servers?"+query, tok, nil)).into(&l)
		return l
	}

	status, data := e.account(http.MethodGet, "/servers?count=2&offset=0", tok, nil)
	golden(t, "servers_list", data)
	var first api.ServerList
	decodeInto(t, status, data, &first)
	all := list("count=500&offset=0")
	want := []string{"gamma-production", "Zulu", "Alpha-production", "beta-staging", "Default", "delta"}
	if fmt.Sprint(names(all)) != fmt.Sprint(want) || all.TotalCount != 6 {
		t.Fatalf("all: %d %q, want 6 %q", all.TotalCount, names(all), want)
	}
	if first.TotalCount != 6 || fmt.Sprint(names(first)) != fmt.Sprint(want[:2]) {
		t.Fatalf("first page: %d %q", first.TotalCount, names(first))
	}
	for _, s := range all.Servers {
		if len(s.ApiTokens) != 1 || !strings.HasSuffix(s.ApiTokens[0], "-****-****-****-************") {
			t.Fatalf("%s: ApiTokens %q, want masked", s.Name, s.ApiTokens)
		}
	}
	if l := list("count=2&offset=4"); l.TotalCount != 6 || fmt.Sprint(names(l)) != fmt.Sprint(want[4:]) {
		t.Fatalf("last page: %d %q", l.TotalCount, names(l))
	}
	// Past the end: an empty list, and the total still.
	status, data = e.account(http.MethodGet, "/servers?count=10&offset=6", tok, nil)
	if status != http.StatusOK || !strings.Contains(string(data), `"Servers":[]`) {
		t.Fatalf("offset past the end: %d %s", status, data)
	}
	if l := list("count=10&offset=9990"); l.TotalCount != 6 || len(l.Servers) != 0 {
		t.Fatalf("far past the end: %+v", l)
	}
	// The name filter: part of the name, in any case.
	if l := list("count=10&offset=0&name=PRODUCTION"); l.TotalCount != 2 || fmt.Sprint(names(l)) != "[gamma-production Alpha-production]" {
		t.Fatalf("name=PRODUCTION: %d %q", l.TotalCount, names(l))
	}
	if l := list("count=1&offset=1&name=production"); l.TotalCount != 2 || fmt.Sprint(names(l)) != "[Alpha-production]" {
		t.Fatalf("filtered second page: %d %q", l.TotalCount, names(l))
	}
	if l := list("count=10&offset=0&name=nothing"); l.TotalCount != 0 || len(l.Servers) != 0 {
		t.Fatalf("no match: %+v", l)
	}
	// Paging errors: 600.
	for _, q := range []string{"", "count=10", "offset=0", "count=0&offset=0", "count=501&offset=0", "count=-1&offset=0",
		"count=10&offset=-1", "count=500&offset=9501", "count=x&offset=0", "count=1&offset=10000"} {
		status, body := e.account(http.MethodGet, "/servers?"+q, tok, nil)
		wantError(t, status, body, http.StatusUnprocessableEntity, 600)
	}
	if l := list("count=500&offset=9500"); l.TotalCount != 6 {
		t.Fatalf("count+offset = 10000 is allowed: %+v", l)
	}
}

func TestServerDelete(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	srv := e.createServer(tok, map[string]any{"Name": "doomed", "DeliveryType": "Sandbox"})
	srvToken := srv.ApiTokens[0]
	id := e.Send(srvToken, "app@example.com", []string{"alice@example.net"}, "Subject: bye\n\nbye\n")
	e.WaitFinal(srv.ID, id)
	path := fmt.Sprintf("/servers/%d", srv.ID)

	// An admin token may do everything but delete.
	var admin api.NewTokenInfo
	e.result(e.account(http.MethodPost, "/account/tokens", tok, map[string]any{"Role": "admin"})).into(&admin)
	status, body := e.account(http.MethodDelete, path, admin.Token, nil)
	wantError(t, status, body, http.StatusUnprocessableEntity, 604)
	var renamed api.Server
	e.result(e.account(http.MethodPut, path, admin.Token, map[string]any{"Name": "doomed-1"})).into(&renamed)
	if renamed.Name != "doomed-1" {
		t.Fatalf("admin rename: %+v", renamed)
	}
	if e.authError(srvToken) != nil {
		t.Fatal("the refused delete broke the server's token")
	}

	status, data := e.account(http.MethodDelete, path, tok, nil)
	golden(t, "server_delete", data)
	var res api.Error
	decodeInto(t, status, data, &res)
	if res.ErrorCode != 0 || res.Message != "Server doomed-1 removed." {
		t.Fatalf("delete answered %+v", res)
	}
	status, body = e.account(http.MethodGet, path, tok, nil)
	wantError(t, status, body, http.StatusNotFound, 601)
	status, body = e.account(http.MethodDelete, path, tok, nil)
	wantError(t, status, body, http.StatusNotFound, 601)
	if _, err := e.Store.Message(srv.ID, id); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrServerMissing) {
		t.Fatalf("the deleted server's message: %v", err)
	}
	if toks, _ := e.Store.ServerTokens(srv.ID); len(toks) != 0 {
		t.Fatalf("tokens left: %+v", toks)
	}
	wantAuthRefused(t, e, srvToken, "the deleted server's token")
	status, body = e.server(http.MethodGet, "/server", srvToken, nil)
	wantError(t, status, body, http.StatusUnauthorized, 10)
	// The init server is untouched.
	e.Send(e.Inst.ServerToken, "app@example.com", []string{"bob@example.net"}, "Subject: still\n\nhere\n")
}

func TestServerIsolation(t *testing.T) {
	e := newEnv(t, envOptions{})
	other := e.newAccount("Customer")
	mine := e.createServer(e.Inst.AccountToken, map[string]any{"Name": "mine"})
	theirs := e.createServer(other.AccountToken, map[string]any{"Name": "mine"}) // the same name in another account is fine

	for _, c := range []struct {
		token string
		srv   api.Server
	}{{other.AccountToken, mine}, {e.Inst.AccountToken, theirs}} {
		base := fmt.Sprintf("/servers/%d", c.srv.ID)
		missing := "/servers/999999"
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{http.MethodGet, "", nil},
			{http.MethodPut, "", map[string]any{"Name": "stolen"}},
			{http.MethodDelete, "", nil},
			{http.MethodGet, "/tokens", nil},
			{http.MethodPost, "/tokens", nil},
			{http.MethodDelete, "/tokens/" + c.srv.ApiTokens[0][:8], nil},
		} {
			s1, b1 := e.account(r.method, base+r.path, c.token, r.body)
			s2, b2 := e.account(r.method, missing+r.path, c.token, r.body)
			wantError(t, s1, b1, http.StatusNotFound, 601)
			if s1 != s2 || string(b1) != string(b2) {
				t.Errorf("%s %s: another account's server answers %d %s, a missing one %d %s", r.method, base+r.path, s1, b1, s2, b2)
			}
		}
	}
	// The other account lists its own servers only.
	var l api.ServerList
	e.result(e.account(http.MethodGet, "/servers?count=10&offset=0", other.AccountToken, nil)).into(&l)
	if l.TotalCount != 1 || l.Servers[0].ID != theirs.ID {
		t.Fatalf("the other account's list: %+v", l)
	}
	// Nothing changed.
	if s, _ := e.Store.Server(mine.ID); s.Name != "mine" {
		t.Fatalf("my server: %+v", s)
	}
	if e.authError(mine.ApiTokens[0]) != nil || e.authError(theirs.ApiTokens[0]) != nil {
		t.Fatal("a token stopped working")
	}

	// Account tokens are not server tokens, and the reverse: 401, code 10.
	for _, tc := range []struct{ method, path, header, token string }{
		{http.MethodGet, "/server", serverHeader, e.Inst.AccountToken},
		{http.MethodGet, "/server", accountHeader, e.Inst.ServerToken},
		{http.MethodGet, "/server", serverHeader, ""},
		{http.MethodGet, "/servers?count=1&offset=0", accountHeader, e.Inst.ServerToken},
		{http.MethodGet, "/servers?count=1&offset=0", serverHeader, e.Inst.AccountToken},
		{http.MethodGet, fmt.Sprintf("/servers/%d", mine.ID), accountHeader, mine.ApiTokens[0]},
		{http.MethodGet, "/servers?count=1&offset=0", accountHeader, "00000000-0000-4000-8000-000000000000"},
		{http.MethodGet, fmt.Sprintf("/servers/%d/tokens", mine.ID), accountHeader, ""},
	} {
		status, body := e.do(tc.method, tc.path, tc.header, tc.token, nil)
		wantError(t, status, body, http.StatusUnauthorized, 10)
	}
}

func TestServerLevel(t *testing.T) {
	e := newEnv(t, envOptions{})
	status, data := e.server(http.MethodGet, "/server", e.Inst.ServerToken, nil)
	golden(t, "server_own", data)
	var srv api.Server
	decodeInto(t, status, data, &srv)
	if srv.ID != e.Inst.ServerID || srv.Name != "Default" || srv.DeliveryType != "Sandbox" || srv.Color != "Purple" ||
		!srv.SmtpApiActivated || len(srv.ApiTokens) != 1 || srv.ApiTokens[0] != auth.Mask(e.Inst.ServerToken[:8]) {
		t.Fatalf("GET /server: %+v", srv)
	}
	// The same object as the account sees.
	var same api.Server
	e.result(e.account(http.MethodGet, fmt.Sprintf("/servers/%d", srv.ID), e.Inst.AccountToken, nil)).into(&same)
	if fmt.Sprint(same) != fmt.Sprint(srv) {
		t.Fatalf("GET /server %+v\nGET /servers/{id} %+v", srv, same)
	}

	e.createServer(e.Inst.AccountToken, map[string]any{"Name": "neighbour"})
	status, data = e.server(http.MethodPut, "/server", e.Inst.ServerToken, map[string]any{"Name": "Renamed", "Color": "GREEN", "Pinned": true, "DeliveryHookUrl": "https://h.example.com/d"})
	golden(t, "server_own_edit", data)
	decodeInto(t, status, data, &srv)
	if srv.Name != "Renamed" || srv.Color != "Green" || !srv.Pinned || srv.DeliveryHookUrl != "https://h.example.com/d" {
		t.Fatalf("PUT /server: %+v", srv)
	}
	for _, tc := range []struct {
		body any
		code int
	}{
		{map[string]any{"Name": "NEIGHBOUR"}, 603},
		{map[string]any{"Color": "Pink"}, 607},
		{map[string]any{"Name": ""}, 608},
		{map[string]any{"DeliveryType": "Live"}, 613},
		{map[string]any{"BounceHookUrl": "hooks.example.com"}, 606},
	} {
		status, body := e.server(http.MethodPut, "/server", e.Inst.ServerToken, tc.body)
		wantError(t, status, body, http.StatusUnprocessableEntity, tc.code)
	}
	// SmtpApiActivated false, set with the account's token (a server
	// token may not change it), turns SMTP off for the server.
	e.result(e.account(http.MethodPut, fmt.Sprintf("/servers/%d", srv.ID), e.Inst.AccountToken, map[string]any{"SmtpApiActivated": false})).into(&srv)
	wantAuthRefused(t, e, e.Inst.ServerToken, "SmtpApiActivated false")
}

// The round trip: a Sandbox server created over HTTP sends over SMTP with
// the token of the POST response; more tokens are made, listed and
// revoked, and a revoked token no longer authenticates.
func TestServerTokensRoundTrip(t *testing.T) {
	e := newEnv(t, envOptions{})
	acct := e.Inst.AccountToken
	srv := e.createServer(acct, map[string]any{"Name": "roundtrip", "DeliveryType": "Sandbox"})
	first := srv.ApiTokens[0]
	id := e.Send(first, "app@example.com", []string{"alice@example.net"}, "Subject: round trip\n\nhello\n")
	if evs := e.WaitFinal(srv.ID, id); len(evs) != 1 || evs[0].Type != store.EventDelivered {
		t.Fatalf("events %+v", evs)
	}
	if m, err := e.Store.Message(srv.ID, id); err != nil || m.ServerID != srv.ID {
		t.Fatalf("the message on the new server: %+v, %v", m, err)
	}
	if n := e.Peer.Connections(); n != 0 {
		t.Fatalf("the Sandbox server reached the peer %d times", n)
	}

	tokens := fmt.Sprintf("/servers/%d/tokens", srv.ID)
	status, data := e.account(http.MethodPost, tokens, acct, nil)
	golden(t, "server_token_create", data)
	var second api.NewTokenInfo
	decodeInto(t, status, data, &second)
	if len(second.Token) != 36 || second.Prefix != second.Token[:8] || second.ServerID != srv.ID || time.Since(second.CreatedAt) > time.Minute {
		t.Fatalf("new token %+v", second)
	}
	e.Send(second.Token, "app@example.com", []string{"bob@example.net"}, "Subject: second token\n\nhello\n")

	status, data = e.account(http.MethodGet, tokens, acct, nil)
	golden(t, "server_tokens", data)
	var list api.TokenList
	decodeInto(t, status, data, &list)
	if list.TotalCount != 2 || list.Tokens[0].Prefix != first[:8] || list.Tokens[1].Prefix != second.Prefix {
		t.Fatalf("token list %+v", list)
	}
	if strings.Contains(string(data), first) || strings.Contains(string(data), second.Token) {
		t.Fatal("the token list shows a token in full")
	}
	var shown api.Server
	e.result(e.server(http.MethodGet, "/server", second.Token, nil)).into(&shown)
	if fmt.Sprint(shown.ApiTokens) != fmt.Sprint([]string{auth.Mask(first[:8]), auth.Mask(second.Prefix)}) {
		t.Fatalf("ApiTokens %q", shown.ApiTokens)
	}

	status, data = e.account(http.MethodDelete, tokens+"/"+first[:8], acct, nil)
	golden(t, "server_token_revoke", []byte(strings.ReplaceAll(string(data), first[:8], "<Prefix>")))
	var res api.Error
	decodeInto(t, status, data, &res)
	if res.ErrorCode != 0 || !strings.Contains(res.Message, first[:8]) {
		t.Fatalf("revoke answered %+v", res)
	}
	wantAuthRefused(t, e, first, "the revoked token")
	status, data = e.server(http.MethodGet, "/server", first, nil)
	wantError(t, status, data, http.StatusUnauthorized, 10)
	if e.authError(second.Token) != nil {
		t.Fatal("revoking one token broke the other")
	}
	status, data = e.account(http.MethodDelete, tokens+"/"+first[:8], acct, nil)
	wantError(t, status, data, http.StatusNotFound, 12)
	// An account token's prefix is not one of the server's tokens.
	status, data = e.account(http.MethodDelete, tokens+"/"+acct[:8], acct, nil)
	wantError(t, status, data, http.StatusNotFound, 12)
	if _, err := e.Store.LookupToken(auth.Hash(acct)); err != nil {
		t.Fatalf("the account token: %v", err)
	}
}
