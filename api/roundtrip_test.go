package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
)

// The round trip: a Live server created over HTTP sends over SMTP with the
// token of the POST response; the message is found in search, its details
// show the relay's delivery, its dump is the stored message and what the
// mail exchanger received after the DKIM signature; once the token is
// revoked, SMTP AUTH with it fails.
func TestRoundTrip(t *testing.T) {
	e := newEnv(t, envOptions{})
	acct := e.Inst.AccountToken
	e.createDomain(acct, "shop.example") // so that the relay signs
	srv := e.createServer(acct, map[string]any{"Name": "round trip", "DeliveryType": "Live"})
	if srv.DeliveryType != "Live" || len(srv.ApiTokens) != 1 {
		t.Fatalf("created %+v", srv)
	}
	token := srv.ApiTokens[0]
	e.route("example.net")

	const rcpt = "alice@example.net"
	sent := "From: Shop <orders@shop.example>\nTo: Alice <alice@example.net>\nSubject: Your order\n\nIt ships today.\n..and this line starts with a dot.\n"
	id := e.Send(token, "orders@shop.example", []string{rcpt}, sent)
	e.WaitFinal(srv.ID, id)

	// Search.
	var found messageList
	e.result(e.server(http.MethodGet, "/messages/outbound?count=10&offset=0&recipient="+url.QueryEscape(rcpt), token, nil)).into(&found)
	if found.TotalCount != 1 || len(found.Messages) != 1 || found.Messages[0].MessageID != id ||
		found.Messages[0].Subject != "Your order" || found.Messages[0].Status != "Sent" {
		t.Fatalf("search: %+v", found)
	}

	// Details: a Delivered event naming the mail exchanger.
	var details struct {
		MessageID     string
		Body          string
		MessageEvents []struct {
			Recipient string
			Type      string
			Details   struct{ DeliveryMessage, DestinationServer, DestinationIP string }
		}
	}
	e.result(e.server(http.MethodGet, "/messages/outbound/"+id+"/details", token, nil)).into(&details)
	if details.MessageID != id || len(details.MessageEvents) != 1 {
		t.Fatalf("details: %+v", details)
	}
	ev := details.MessageEvents[0]
	if ev.Recipient != rcpt || ev.Type != "Delivered" || ev.Details.DestinationServer != "mx.example.net" ||
		ev.Details.DestinationIP != "127.0.0.1" || !strings.HasPrefix(ev.Details.DeliveryMessage, "250") {
		t.Fatalf("event %+v", ev)
	}

	// The dump is the stored message, byte for byte ...
	var dump struct{ Body string }
	e.result(e.server(http.MethodGet, "/messages/outbound/"+id+"/dump", token, nil)).into(&dump)
	stored, err := e.Store.RawMessage(srv.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	if dump.Body != string(stored) || details.Body != string(stored) {
		t.Fatalf("dump %q\nstored %q", dump.Body, stored)
	}
	// ... whose body is the one sent ...
	_, body, ok := bytes.Cut(stored, []byte("\r\n\r\n"))
	if want := strings.ReplaceAll(sent[strings.Index(sent, "\n\n")+2:], "\n", "\r\n"); !ok || string(body) != want {
		t.Fatalf("stored body %q, sent %q", body, want)
	}
	// ... and what the mail exchanger received after the DKIM-Signature
	// the relay put on top.
	msgs := e.Peer.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != rcpt {
		t.Fatalf("the peer received %+v", msgs)
	}
	received := msgs[0].Data
	prefix, ok := bytes.CutSuffix(received, stored)
	if !ok {
		t.Fatalf("the peer received %q\nnot ending with the stored %q", received, stored)
	}
	if !bytes.HasPrefix(prefix, []byte("DKIM-Signature:")) || !bytes.Contains(prefix, []byte("d=shop.example")) {
		t.Fatalf("what the relay put before the stored message: %q", prefix)
	}
	if _, peerBody, _ := bytes.Cut(received, []byte("\r\n\r\n")); !bytes.Equal(peerBody, body) {
		t.Fatalf("the peer's body %q, the dump's %q", peerBody, body)
	}
	if !bytes.Contains(stored, []byte("Received: from ")) {
		t.Fatalf("no Received field in %q", stored)
	}

	// Revoke the token: SMTP AUTH with it fails with 535 5.7.8, and the
	// API no longer knows it.
	var res api.Error
	e.result(e.account(http.MethodDelete, fmt.Sprintf("/servers/%d/tokens/%s", srv.ID, token[:8]), acct, nil)).into(&res)
	se := e.authError(token)
	if se == nil || se.Code != 535 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 8}) {
		t.Fatalf("SMTP AUTH with the revoked token: %v, want 535 5.7.8", se)
	}
	status, data := e.server(http.MethodGet, "/server", token, nil)
	wantError(t, status, data, http.StatusUnauthorized, 10)
}
