package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store"
)

// TestServerTransfer moves a server with mail between accounts over the
// HTTP API, on the whole stack: its token keeps sending over SMTP, and its
// mail is signed with the domain copied with it.
func TestServerTransfer(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.route("example.net")
	op := e.Inst.AccountToken
	cust := e.newAccount("Customer")
	srv := e.createServer(op, map[string]any{"Name": "shop"})
	tok := srv.ApiTokens[0]
	e.SendingDomain(e.Inst.AccountID, "shop.example")
	const mail = "From: App <app@shop.example>\r\nTo: alice@example.net\r\nSubject: hi\r\n\r\nhi\r\n"
	first := e.Send(tok, "app@shop.example", []string{"alice@example.net"}, mail)
	if evs := e.WaitFinal(srv.ID, first); len(evs) != 1 || evs[0].Type != store.EventDelivered || evs[0].Details.Signed != "shop.example" {
		t.Fatalf("before the transfer: %+v", evs)
	}
	path := fmt.Sprintf("/servers/%d/transfer", srv.ID)
	body := map[string]any{"AccountID": cust.ID, "CopyDomains": true}

	// Only the operator's owner tokens know the endpoint.
	status, data := e.account(http.MethodPost, path, cust.AccountToken, body)
	wantNoEndpoint(t, status, data, http.MethodPost, path)
	// Refusals.
	status, data = e.account(http.MethodPost, path, op, map[string]any{"AccountID": e.Inst.AccountID})
	wantError(t, status, data, http.StatusUnprocessableEntity, 403)
	status, data = e.account(http.MethodPost, path, op, map[string]any{})
	wantError(t, status, data, http.StatusUnprocessableEntity, 403)
	status, data = e.account(http.MethodPost, "/servers/9999/transfer", op, body)
	wantError(t, status, data, http.StatusNotFound, 601)
	status, data = e.account(http.MethodPost, path, op, map[string]any{"AccountID": 9999})
	wantError(t, status, data, http.StatusNotFound, 12)
	clash := e.createServer(cust.AccountToken, map[string]any{"Name": "SHOP"})
	status, data = e.account(http.MethodPost, path, op, body)
	wantError(t, status, data, http.StatusUnprocessableEntity, 603)
	var res api.Error
	e.result(e.account(http.MethodDelete, fmt.Sprintf("/servers/%d", clash.ID), cust.AccountToken, nil)).into(&res)
	if got, _ := e.Store.Server(srv.ID); got.AccountID != e.Inst.AccountID {
		t.Fatalf("a refused transfer moved the server: %+v", got)
	}

	status, data = e.account(http.MethodPost, path, op, body)
	var moved api.TransferAnswer
	decodeInto(t, status, data, &moved)
	if moved.Server.ID != srv.ID || moved.Server.Name != "shop" || fmt.Sprint(moved.CopiedDomains) != "[shop.example]" ||
		moved.MissingDomains == nil || len(moved.MissingDomains) != 0 || moved.RemovedGrants != 0 {
		t.Fatalf("transfer: %s", data)
	}
	// The answer's Server is GET /servers/{id}'s, now with the customer's
	// token only.
	status, got := e.account(http.MethodGet, fmt.Sprintf("/servers/%d", srv.ID), cust.AccountToken, nil)
	var raw struct{ Server json.RawMessage }
	if err := json.Unmarshal(data, &raw); err != nil || status != http.StatusOK || !bytes.Equal(bytes.TrimSpace(got), raw.Server) {
		t.Fatalf("GET after the transfer: %d %s\nthe transfer's Server: %s", status, got, raw.Server)
	}
	status, data = e.account(http.MethodGet, fmt.Sprintf("/servers/%d", srv.ID), op, nil)
	wantError(t, status, data, http.StatusNotFound, 601)
	var list api.ServerList
	e.result(e.account(http.MethodGet, "/servers?count=10&offset=0", cust.AccountToken, nil)).into(&list)
	if list.TotalCount != 1 || list.Servers[0].ID != srv.ID {
		t.Fatalf("the customer's servers: %+v", list)
	}
	var domains api.DomainList
	e.result(e.account(http.MethodGet, "/domains?count=10&offset=0", cust.AccountToken, nil)).into(&domains)
	if domains.TotalCount != 1 || domains.Domains[0].Name != "shop.example" {
		t.Fatalf("the customer's domains: %+v", domains)
	}

	// The token sends on, signed with the copied keys, and its mail and
	// its history are where they were.
	second := e.Send(tok, "app@shop.example", []string{"alice@example.net"}, mail)
	if evs := e.WaitFinal(srv.ID, second); len(evs) != 1 || evs[0].Type != store.EventDelivered || evs[0].Details.Signed != "shop.example" {
		t.Fatalf("after the transfer: %+v", evs)
	}
	var msgs api.OutboundMessageList
	e.result(e.server(http.MethodGet, "/messages/outbound?count=10&offset=0", tok, nil)).into(&msgs)
	if msgs.TotalCount != 2 {
		t.Fatalf("messages after the transfer: %+v", msgs)
	}

	// Back, without its domain: the operator's account lacks it now.
	status, data = e.account(http.MethodPost, path, op, map[string]any{"AccountID": e.Inst.AccountID})
	decodeInto(t, status, data, &moved)
	if fmt.Sprint(moved.MissingDomains) != "[shop.example]" || len(moved.CopiedDomains) != 0 {
		t.Fatalf("back: %s", data)
	}
}
