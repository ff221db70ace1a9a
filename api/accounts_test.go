package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store"
)

// newAccount creates an account through POST /accounts with the operator's
// owner token.
func (e *env) newAccount(name string) api.NewAccount {
	e.T.Helper()
	var a api.NewAccount
	e.result(e.account(http.MethodPost, "/accounts", e.Inst.AccountToken, map[string]any{"Name": name})).into(&a)
	return a
}

// wantNoEndpoint checks the answer of an endpoint that does not exist.
func wantNoEndpoint(t *testing.T, status int, body []byte, method, path string) {
	t.Helper()
	want := fmt.Sprintf(`{"ErrorCode":12,"Message":"No such endpoint: %s %s"}`+"\n", method, path)
	if status != http.StatusNotFound || string(body) != want {
		t.Fatalf("%s %s: %d %s, want 404 %s", method, path, status, body, want)
	}
}

func TestAccounts(t *testing.T) {
	e := newEnv(t, envOptions{})
	op := e.Inst.AccountToken

	status, data := e.account(http.MethodPost, "/accounts", op, map[string]any{"Name": " Acme Corp "})
	golden(t, "account_create", data)
	var acme api.NewAccount
	decodeInto(t, status, data, &acme)
	if acme.ID == e.Inst.AccountID || acme.Name != "Acme Corp" || len(acme.AccountToken) != 36 {
		t.Fatalf("created %+v", acme)
	}
	// The new owner token works, on an empty account.
	var l api.ServerList
	e.result(e.account(http.MethodGet, "/servers?count=10&offset=0", acme.AccountToken, nil)).into(&l)
	if l.TotalCount != 0 || len(l.Servers) != 0 {
		t.Fatalf("a new account's servers: %+v", l)
	}
	srv := e.createServer(acme.AccountToken, map[string]any{"Name": "acme-production", "DeliveryType": "Sandbox"})
	e.Send(srv.ApiTokens[0], "app@acme.example", []string{"alice@example.net"}, "Subject: hi\n\nhi\n")

	for _, body := range []any{map[string]any{}, map[string]any{"Name": ""}, map[string]any{"Name": strings.Repeat("n", 101)}} {
		status, data := e.account(http.MethodPost, "/accounts", op, body)
		wantError(t, status, data, http.StatusUnprocessableEntity, 403)
	}

	status, data = e.account(http.MethodGet, "/accounts", op, nil)
	golden(t, "accounts_list", data)
	var list api.AccountList
	decodeInto(t, status, data, &list)
	if list.TotalCount != 2 || len(list.Accounts) != 2 ||
		list.Accounts[0].ID != e.Inst.AccountID || !list.Accounts[0].Operator || list.Accounts[0].ServerCount != 1 ||
		list.Accounts[1].ID != acme.ID || list.Accounts[1].Operator || list.Accounts[1].ServerCount != 1 || list.Accounts[1].Name != "Acme Corp" {
		t.Fatalf("accounts %+v", list)
	}

	// Any other account: as if the endpoints did not exist.
	var admin api.NewTokenInfo
	e.result(e.account(http.MethodPost, "/account/tokens", op, map[string]any{"Role": "admin"})).into(&admin)
	for _, tok := range []string{acme.AccountToken, admin.Token} {
		for _, r := range []struct {
			method, path string
			body         any
		}{
			{http.MethodGet, "/accounts", nil},
			{http.MethodPost, "/accounts", map[string]any{"Name": "sneaky"}},
			{http.MethodDelete, fmt.Sprintf("/accounts/%d", acme.ID), nil},
			{http.MethodDelete, fmt.Sprintf("/accounts/%d", e.Inst.AccountID), nil},
		} {
			status, data := e.account(r.method, r.path, tok, r.body)
			wantNoEndpoint(t, status, data, r.method, r.path)
		}
	}
	// Without a valid account token: 401, and a server token is not one.
	for _, tok := range []string{"", e.Inst.ServerToken} {
		status, data := e.account(http.MethodGet, "/accounts", tok, nil)
		wantError(t, status, data, http.StatusUnauthorized, 10)
	}

	// Deleting: never the operator, not while servers remain.
	status, data = e.account(http.MethodDelete, fmt.Sprintf("/accounts/%d", e.Inst.AccountID), op, nil)
	wantError(t, status, data, http.StatusUnprocessableEntity, 604)
	path := fmt.Sprintf("/accounts/%d", acme.ID)
	status, data = e.account(http.MethodDelete, path, op, nil)
	wantError(t, status, data, http.StatusUnprocessableEntity, 604)
	var res api.Error
	e.result(e.account(http.MethodDelete, fmt.Sprintf("/servers/%d", srv.ID), acme.AccountToken, nil)).into(&res)
	status, data = e.account(http.MethodDelete, path, op, nil)
	golden(t, "account_delete", data)
	decodeInto(t, status, data, &res)
	if res.ErrorCode != 0 || res.Message != "Account Acme Corp removed." {
		t.Fatalf("delete answered %+v", res)
	}
	status, data = e.account(http.MethodGet, "/servers?count=1&offset=0", acme.AccountToken, nil)
	wantError(t, status, data, http.StatusUnauthorized, 10)
	for _, p := range []string{path, "/accounts/999", "/accounts/x"} {
		status, data = e.account(http.MethodDelete, p, op, nil)
		wantError(t, status, data, http.StatusNotFound, 12)
	}
}

func TestAccountTokens(t *testing.T) {
	e := newEnv(t, envOptions{})
	owner := e.Inst.AccountToken

	status, data := e.account(http.MethodPost, "/account/tokens", owner, map[string]any{"Role": "Admin"})
	golden(t, "account_token_create", data)
	var admin api.NewTokenInfo
	decodeInto(t, status, data, &admin)
	if len(admin.Token) != 36 || admin.Role != "admin" || admin.Prefix != admin.Token[:8] || admin.ServerID != 0 {
		t.Fatalf("admin token %+v", admin)
	}
	for _, body := range []any{map[string]any{}, map[string]any{"Role": "root"}} {
		status, data := e.account(http.MethodPost, "/account/tokens", owner, body)
		wantError(t, status, data, http.StatusUnprocessableEntity, 403)
	}
	// An admin may make admin tokens, not owner tokens.
	status, data = e.account(http.MethodPost, "/account/tokens", admin.Token, map[string]any{"Role": "owner"})
	wantError(t, status, data, http.StatusUnprocessableEntity, 604)
	var admin2 api.NewTokenInfo
	e.result(e.account(http.MethodPost, "/account/tokens", admin.Token, map[string]any{"Role": "admin"})).into(&admin2)

	status, data = e.account(http.MethodGet, "/account/tokens", admin.Token, nil)
	golden(t, "account_tokens", data)
	var list api.TokenList
	decodeInto(t, status, data, &list)
	if list.TotalCount != 3 || list.Tokens[0].Prefix != owner[:8] || list.Tokens[0].Role != "owner" ||
		list.Tokens[1].Prefix != admin.Prefix || list.Tokens[2].Role != "admin" {
		t.Fatalf("tokens %+v", list)
	}
	for _, tok := range []string{owner, admin.Token, admin2.Token, e.Inst.ServerToken} {
		if strings.Contains(string(data), tok) {
			t.Fatal("the listing shows a token in full")
		}
	}
	// The server's token is not listed with the account's.
	if strings.Contains(string(data), e.Inst.ServerToken[:8]) {
		t.Fatal("a server token is listed as an account token")
	}

	// An admin cannot revoke an owner token; the last owner token stays.
	status, data = e.account(http.MethodDelete, "/account/tokens/"+owner[:8], admin.Token, nil)
	wantError(t, status, data, http.StatusUnprocessableEntity, 604)
	status, data = e.account(http.MethodDelete, "/account/tokens/"+owner[:8], owner, nil)
	wantError(t, status, data, http.StatusUnprocessableEntity, 604)
	status, data = e.account(http.MethodDelete, "/account/tokens/"+admin2.Prefix, admin.Token, nil)
	golden(t, "account_token_revoke", []byte(strings.ReplaceAll(string(data), admin2.Prefix, "<Prefix>")))
	var res api.Error
	decodeInto(t, status, data, &res)
	status, data = e.account(http.MethodGet, "/account/tokens", admin2.Token, nil)
	wantError(t, status, data, http.StatusUnauthorized, 10)
	status, data = e.account(http.MethodDelete, "/account/tokens/"+admin2.Prefix, owner, nil)
	wantError(t, status, data, http.StatusNotFound, 12)

	// A second owner makes the first revocable; then it no longer works.
	var owner2 api.NewTokenInfo
	e.result(e.account(http.MethodPost, "/account/tokens", owner, map[string]any{"Role": "owner"})).into(&owner2)
	e.result(e.account(http.MethodDelete, "/account/tokens/"+owner[:8], owner2.Token, nil)).into(&res)
	status, data = e.account(http.MethodGet, "/account/tokens", owner, nil)
	wantError(t, status, data, http.StatusUnauthorized, 10)

	// Another account's tokens are out of reach.
	var acme api.NewAccount
	e.result(e.account(http.MethodPost, "/accounts", owner2.Token, map[string]any{"Name": "Acme"})).into(&acme)
	status, data = e.account(http.MethodDelete, "/account/tokens/"+acme.AccountToken[:8], owner2.Token, nil)
	wantError(t, status, data, http.StatusNotFound, 12)
	var acmeList api.TokenList
	e.result(e.account(http.MethodGet, "/account/tokens", acme.AccountToken, nil)).into(&acmeList)
	if acmeList.TotalCount != 1 || acmeList.Tokens[0].Prefix != acme.AccountToken[:8] || acmeList.Tokens[0].Role != string(store.RoleOwner) {
		t.Fatalf("acme's tokens %+v", acmeList)
	}
}
