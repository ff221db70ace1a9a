package api_test

import (
	"net/http"
	"testing"

	"github.com/postern/postern/store"
)

func TestUnknownEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{})
	status, body := e.account(http.MethodGet, "/no/such/thing", e.Inst.AccountToken, nil)
	wantError(t, status, body, http.StatusNotFound, 12)
}

// The harness itself: a message sent over SMTP on the Sandbox server is
// recorded Delivered by the relay, and nothing reaches the peer.
func TestHarnessSendsThroughTheRelay(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.Send(e.Inst.ServerToken, "app@example.com", []string{"alice@example.net"}, "Subject: hi\n\nhello\n")
	evs := e.WaitFinal(e.Inst.ServerID, id)
	if len(evs) != 1 || evs[0].Type != store.EventDelivered {
		t.Fatalf("events %+v", evs)
	}
	if n := e.Peer.Connections(); n != 0 {
		t.Fatalf("the sandbox reached the peer %d times", n)
	}
}
