package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/password"
	"github.com/postern/postern/store"
)

func TestUsers(t *testing.T) {
	e := newEnv(t, envOptions{})
	owner := e.Inst.AccountToken
	srv, _ := e.LiveServer("client-a")
	other, otherOwner := e.domainsAccount("Other")
	otherSrv, err := e.Store.CreateServer(store.Server{AccountID: other.ID, Name: "theirs", DeliveryType: store.DeliveryLive}, auth.StoreToken(auth.NewToken()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// An admin token of the account.
	adminToken := auth.NewToken()
	nt := auth.StoreToken(adminToken)
	nt.Kind, nt.AccountID, nt.Role, nt.CreatedAt = store.KindAccount, e.Inst.AccountID, store.RoleAdmin, time.Now()
	if err := e.Store.AddToken(nt); err != nil {
		t.Fatal(err)
	}

	add := func(tok string, body map[string]any) (int, api.UserView, []byte) {
		status, data := e.account(http.MethodPost, "/users", tok, body)
		var v api.UserView
		if status == 200 {
			decodeInto(t, status, data, &v)
		}
		return status, v, data
	}
	status, ann, data := add(owner, map[string]any{"Email": "ann@example.com", "Password": "a long passphrase", "Role": "Owner"})
	if status != 200 || ann.Role != "Owner" || ann.SignInURL != "" {
		t.Fatalf("an Owner with a password: %d %s", status, data)
	}
	u, _ := e.Store.User(ann.ID)
	if ok, err := password.Verify("a long passphrase", u.PasswordHash); !ok || err != nil || strings.Contains(string(data), "passphrase") {
		t.Errorf("the password is not kept as its argon2id hash: %v %v", ok, err)
	}
	status, bob, data := add(owner, map[string]any{"Email": "bob@client.example", "Role": "Member",
		"Servers": []map[string]any{{"ServerID": srv.ID, "Access": "Viewer"}}})
	if status != 200 || !strings.HasPrefix(bob.SignInURL, "http://127.0.0.1:8081/signin/link?token=") || len(bob.Servers) != 1 || bob.Servers[0].Access != "Viewer" {
		t.Fatalf("a Member without a password: %d %s", status, data)
	}
	// The same person in another account is the same user, with a
	// second membership, and keeps the password.
	status, annThere, data := add(otherOwner, map[string]any{"Email": "ANN@example.com", "Role": "Admin"})
	if status != 200 || annThere.ID != ann.ID || annThere.SignInURL != "" {
		t.Errorf("a second account: %d %s", status, data)
	}
	if ms, _ := e.Store.Memberships(ann.ID); len(ms) != 2 {
		t.Errorf("Ann's memberships: %+v", ms)
	}

	for name, c := range map[string]struct {
		tok    string
		body   map[string]any
		status int
	}{
		"short password":           {owner, map[string]any{"Email": "c@example.com", "Password": "short", "Role": "Admin"}, 422},
		"bad email":                {owner, map[string]any{"Email": "not an address", "Role": "Admin"}, 422},
		"bad role":                 {owner, map[string]any{"Email": "c@example.com", "Role": "King"}, 422},
		"another account's server": {owner, map[string]any{"Email": "c@example.com", "Role": "Member", "Servers": []map[string]any{{"ServerID": otherSrv.ID, "Access": "Admin"}}}, 422},
		"admin makes an Owner":     {adminToken, map[string]any{"Email": "c@example.com", "Role": "Owner"}, 403},
		"already a member":         {owner, map[string]any{"Email": "bob@client.example", "Role": "Admin"}, 422},
	} {
		if status, _, data := add(c.tok, c.body); status != c.status {
			t.Errorf("%s: %d %s, want %d", name, status, data, c.status)
		}
	}

	var list api.UserList
	status, data = e.account(http.MethodGet, "/users", owner, nil)
	decodeInto(t, status, data, &list)
	if list.TotalCount != 3 || list.Users[0].Email != "owner@localhost" || list.Users[1].Email != "ann@example.com" || list.Users[2].Email != "bob@client.example" {
		t.Errorf("list %+v", list)
	}
	// The other account sees only its own people.
	status, data = e.account(http.MethodGet, "/users", otherOwner, nil)
	decodeInto(t, status, data, &list)
	if list.TotalCount != 1 || list.Users[0].ID != ann.ID || list.Users[0].Role != "Admin" {
		t.Errorf("the other account's list %+v", list)
	}

	// The installation's owner leaves (Ann is an Owner too); then the
	// last Owner stays, and an admin token cannot touch an Owner.
	if status, data := e.account(http.MethodDelete, "/users/1", owner, nil); status != 200 {
		t.Fatalf("removing owner@localhost: %d %s", status, data)
	}
	status, data = e.account(http.MethodPut, fmt.Sprintf("/users/%d", ann.ID), owner, map[string]any{"Role": "Admin"})
	wantError(t, status, data, 422, 403)
	status, data = e.account(http.MethodDelete, fmt.Sprintf("/users/%d", ann.ID), adminToken, nil)
	wantError(t, status, data, 403, 403)
	status, data = e.account(http.MethodPut, fmt.Sprintf("/users/%d", bob.ID), adminToken, map[string]any{"Role": "Admin"})
	var edited api.UserView
	decodeInto(t, status, data, &edited)
	if edited.Role != "Admin" || len(edited.Servers) != 0 {
		t.Errorf("edited %+v", edited)
	}
	status, data = e.account(http.MethodDelete, fmt.Sprintf("/users/%d", bob.ID), owner, nil)
	if status != 200 {
		t.Errorf("remove: %d %s", status, data)
	}
	// Removed from this account only; unknown to the other, as if missing.
	status, data = e.account(http.MethodDelete, fmt.Sprintf("/users/%d", bob.ID), otherOwner, nil)
	wantError(t, status, data, 404, 1501)
	if _, err := e.Store.User(bob.ID); err != nil {
		t.Errorf("the user is gone with the membership: %v", err)
	}
}
