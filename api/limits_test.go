package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store"
)

// The limits and the retention on the Server object: defaults, edits,
// validation, and who may change them.
func TestServerLimitsAndRetention(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	srv := e.createServer(tok, map[string]any{"Name": "limited", "RateLimitPerMinute": 60, "DailyQuota": 1000})
	if srv.RateLimitPerMinute != 60 || srv.DailyQuota != 1000 || srv.RetentionDays != store.DefaultRetentionDays {
		t.Fatalf("created: %+v", srv)
	}
	plain := e.createServer(tok, map[string]any{"Name": "plain"})
	if plain.RateLimitPerMinute != 0 || plain.DailyQuota != 0 || plain.RetentionDays != 45 {
		t.Fatalf("defaults: %+v", plain)
	}
	path := fmt.Sprintf("/servers/%d", srv.ID)
	var got api.Server
	e.result(e.account(http.MethodPut, path, tok, map[string]any{"RateLimitPerMinute": 0, "RetentionDays": 7})).into(&got)
	if got.RateLimitPerMinute != 0 || got.DailyQuota != 1000 || got.RetentionDays != 7 {
		t.Fatalf("edited: %+v", got)
	}
	stored, err := e.Store.Server(srv.ID)
	if err != nil || stored.RateLimitPerMinute != 0 || stored.DailyQuota != 1000 || stored.RetentionDays != 7 {
		t.Fatalf("stored: %+v %v", stored, err)
	}

	for _, tc := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"negative rate", map[string]any{"RateLimitPerMinute": -1}, "RateLimitPerMinute must be from 0 (no limit) to 100000 messages per minute, got -1."},
		{"huge rate", map[string]any{"RateLimitPerMinute": 100001}, "RateLimitPerMinute must be from 0 (no limit) to 100000 messages per minute, got 100001."},
		{"negative quota", map[string]any{"DailyQuota": -5}, "DailyQuota must be from 0 (no quota) to 100000000 messages per UTC day, got -5."},
		{"retention 0", map[string]any{"RetentionDays": 0}, "RetentionDays must be from 1 to 365 days, got 0."},
		{"retention 366", map[string]any{"RetentionDays": 366}, "RetentionDays must be from 1 to 365 days, got 366."},
		{"retention not a number", map[string]any{"RetentionDays": "45"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []struct {
				method, path string
				body         map[string]any
			}{
				{http.MethodPut, path, tc.body},
				{http.MethodPost, "/servers", merge(tc.body, map[string]any{"Name": "new " + tc.name})},
			} {
				status, body := e.account(req.method, req.path, tok, req.body)
				if tc.want == "" {
					wantError(t, status, body, http.StatusUnprocessableEntity, 402)
					continue
				}
				wantError(t, status, body, http.StatusUnprocessableEntity, 403)
				var apiErr api.Error
				if err := json.Unmarshal(body, &apiErr); err != nil {
					t.Fatal(err)
				}
				if apiErr.Message != tc.want {
					t.Errorf("%s %s: %q, want %q", req.method, req.path, apiErr.Message, tc.want)
				}
			}
		})
	}
	if after, _ := e.Store.Server(srv.ID); after.RetentionDays != 7 || after.DailyQuota != 1000 {
		t.Fatalf("refused edits changed the server: %+v", after)
	}

	// A server token cannot lift its own limits or change its retention,
	// but may send them back unchanged (GET, then PUT what it got).
	own := e.Inst.ServerToken
	e.result(e.account(http.MethodPut, fmt.Sprintf("/servers/%d", e.Inst.ServerID), tok, map[string]any{"RateLimitPerMinute": 10})).into(&got)
	for _, body := range []map[string]any{{"RateLimitPerMinute": 0}, {"DailyQuota": 5}, {"RetentionDays": 365}} {
		status, data := e.server(http.MethodPut, "/server", own, body)
		wantError(t, status, data, http.StatusUnprocessableEntity, 403)
	}
	e.result(e.server(http.MethodPut, "/server", own, map[string]any{"Name": "Mine", "RateLimitPerMinute": 10, "DailyQuota": 0, "RetentionDays": 45})).into(&got)
	if got.Name != "Mine" || got.RateLimitPerMinute != 10 {
		t.Fatalf("PUT /server with unchanged limits: %+v", got)
	}
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range []map[string]any{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// Messages past their server's retention answer 404 once the purge has
// run, with their bounces; newer ones, queued ones and the stats stay.
func TestPurgedMessagesAreNotFound(t *testing.T) {
	f := newFixture(t)
	var sendsBefore, sendsAfter, bouncesBefore, bouncesAfter map[string]any
	f.result(f.server(http.MethodGet, "/stats/outbound/sends", f.tokA, nil)).into(&sendsBefore)
	f.result(f.server(http.MethodGet, "/stats/outbound/bounces", f.tokA, nil)).into(&bouncesBefore)
	bounces := f.bounces(t, f.tokA, "count=10&offset=0")
	var soft, hard int64
	for _, b := range bounces.Bounces {
		switch b.Email {
		case "full@example.org":
			soft = b.ID
		case "nobody@example.net":
			hard = b.ID
		}
	}
	if soft == 0 || hard == 0 {
		t.Fatalf("bounces %+v", bounces)
	}
	// B keeps its mail for 100 days.
	e := f.env
	e.result(e.account(http.MethodPut, fmt.Sprintf("/servers/%d", f.B.ID), e.Inst.AccountToken, map[string]any{"RetentionDays": 100})).into(new(api.Server))

	// 46 days on, A's default retention of 45 days has passed.
	if _, err := e.Store.PurgeExpired(context.Background(), time.Now().Add(46*24*time.Hour), 2); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{f.welcome, f.invoice, f.again} {
		for _, p := range []string{"/details", "/dump"} {
			status, body := f.server(http.MethodGet, "/messages/outbound/"+id+p, f.tokA, nil)
			wantError(t, status, body, http.StatusNotFound, 701)
		}
	}
	// Still being delivered: kept.
	var details map[string]any
	f.result(f.server(http.MethodGet, "/messages/outbound/"+f.deferred+"/details", f.tokA, nil)).into(&details)
	// Another server's longer retention.
	f.result(f.server(http.MethodGet, "/messages/outbound/"+f.lost+"/details", f.tokB, nil)).into(&details)
	var list messageList
	f.result(f.server(http.MethodGet, "/messages/outbound?count=50&offset=0", f.tokA, nil)).into(&list)
	if list.TotalCount != 1 || list.Messages[0].MessageID != f.deferred {
		t.Fatalf("A's messages after the purge: %+v", list)
	}
	// The soft bounce went with its message; the hard bounce stays while
	// it keeps its recipient inactive, so that it can be reactivated.
	status, body := f.server(http.MethodGet, fmt.Sprintf("/bounces/%d", soft), f.tokA, nil)
	wantError(t, status, body, http.StatusNotFound, 1001)
	var held bounceOut
	f.result(f.server(http.MethodGet, fmt.Sprintf("/bounces/%d", hard), f.tokA, nil)).into(&held)
	if !held.Inactive || held.DumpAvailable {
		t.Fatalf("held bounce %+v", held)
	}
	// The stats are all still there.
	f.result(f.server(http.MethodGet, "/stats/outbound/sends", f.tokA, nil)).into(&sendsAfter)
	f.result(f.server(http.MethodGet, "/stats/outbound/bounces", f.tokA, nil)).into(&bouncesAfter)
	if fmt.Sprint(sendsAfter) != fmt.Sprint(sendsBefore) || fmt.Sprint(bouncesAfter) != fmt.Sprint(bouncesBefore) {
		t.Fatalf("stats changed:\n%v\n%v\nwere\n%v\n%v", sendsAfter, bouncesAfter, sendsBefore, bouncesBefore)
	}
	// newEnv checks the store's consistency when the test ends, once the
	// relay has stopped: bbolt's Tx.Check is not safe beside commits.
}

// The account's off switch for SMTP is the account's: a client holding
// the server's token cannot turn SMTP back on, but may PUT back the value
// it got.
func TestServerTokenCannotChangeSMTPSwitch(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok, own := e.Inst.AccountToken, e.Inst.ServerToken
	var got api.Server
	e.result(e.account(http.MethodPut, fmt.Sprintf("/servers/%d", e.Inst.ServerID), tok, map[string]any{"SmtpApiActivated": false})).into(&got)
	if got.SmtpApiActivated {
		t.Fatalf("the account token did not turn SMTP off: %+v", got)
	}
	status, body := e.server(http.MethodPut, "/server", own, map[string]any{"SmtpApiActivated": true})
	wantError(t, status, body, http.StatusUnprocessableEntity, 403)
	var apiErr api.Error
	if err := json.Unmarshal(body, &apiErr); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("SmtpApiActivated can be changed only with an account token (PUT /servers/%d), not with the server's token.", e.Inst.ServerID); apiErr.Message != want {
		t.Errorf("message %q, want %q", apiErr.Message, want)
	}
	if after, _ := e.Store.Server(e.Inst.ServerID); after.SmtpApiActivated {
		t.Fatal("the server token turned SMTP back on")
	}
	e.result(e.server(http.MethodPut, "/server", own, map[string]any{"Name": "Mine", "SmtpApiActivated": false})).into(&got)
	if got.Name != "Mine" || got.SmtpApiActivated {
		t.Fatalf("PUT /server with the switch unchanged: %+v", got)
	}
}

// One tenant cannot grow without bound: past max-domains-per-account,
// max-servers-per-account and max-tokens-per-server, a creation answers
// 422 with a Postmark error naming the cap, and nothing is created.
func TestTenantCaps(t *testing.T) {
	e := newEnv(t, envOptions{caps: store.Caps{DomainsPerAccount: 2, ServersPerAccount: 2, TokensPerServer: 2}})
	tok := e.Inst.AccountToken
	capped := func(what string, status int, body []byte, setting string, limit int, noun string) {
		t.Helper()
		wantError(t, status, body, http.StatusUnprocessableEntity, 403)
		var apiErr api.Error
		if err := json.Unmarshal(body, &apiErr); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("The limit of %d %s is reached (the operator's %s setting); delete one first.", limit, noun, setting)
		if apiErr.Message != want {
			t.Errorf("%s: %q, want %q", what, apiErr.Message, want)
		}
	}
	for _, name := range []string{"one.example", "two.example"} {
		e.result(e.account(http.MethodPost, "/domains", tok, map[string]any{"Name": name}))
	}
	status, body := e.account(http.MethodPost, "/domains", tok, map[string]any{"Name": "three.example"})
	capped("a third domain", status, body, "max-domains-per-account", 2, "domains per account")

	// The account has init's server "Default"; one more reaches the cap.
	e.createServer(tok, map[string]any{"Name": "second"})
	status, body = e.account(http.MethodPost, "/servers", tok, map[string]any{"Name": "third"})
	capped("a third server", status, body, "max-servers-per-account", 2, "servers per account")

	// The server has its first token; one more reaches the cap.
	path := fmt.Sprintf("/servers/%d/tokens", e.Inst.ServerID)
	e.result(e.account(http.MethodPost, path, tok, nil))
	status, body = e.account(http.MethodPost, path, tok, nil)
	capped("a third token", status, body, "max-tokens-per-server", 2, "tokens per server")

	servers, err := e.Store.ListServers(e.Inst.AccountID)
	if err != nil || len(servers) != 2 {
		t.Errorf("%d servers (%v), want 2", len(servers), err)
	}
	tokens, err := e.Store.ServerTokens(e.Inst.ServerID)
	if err != nil || len(tokens) != 2 {
		t.Errorf("%d tokens (%v), want 2", len(tokens), err)
	}
	domains, err := e.Store.Domains(e.Inst.AccountID)
	if err != nil || len(domains) != 2 {
		t.Errorf("%d domains (%v), want 2", len(domains), err)
	}
}
