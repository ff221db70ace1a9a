package smtpd

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// revocationMessage is a message the Sandbox server accepts.
const revocationMessage = "From: app@example.com\r\nTo: someone@example.net\r\nSubject: hi\r\n\r\nhello\r\n"

// sendOne runs one transaction on c and returns the reply to MAIL, or
// to the end of DATA when MAIL was accepted.
func sendOne(c *rawClient) string {
	if got := c.cmd("MAIL FROM:<app@example.com>"); !strings.HasPrefix(got, "250") {
		return got
	}
	c.expect("250", "RCPT TO:<someone@example.net>")
	return c.sendData(revocationMessage)
}

// A session keeps the server it authenticated as; a token revoked, a
// server deleted or switched off afterwards reaches it at its next MAIL,
// which is refused, and the session must AUTH again.
func TestRevocationReachesOpenSessions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, ts *testServer)
		want   string
	}{
		{"token revoked", func(t *testing.T, ts *testServer) {
			if err := ts.Store.RevokeServerToken(ts.Inst.ServerID, ts.Inst.ServerToken[:8]); err != nil {
				t.Fatal(err)
			}
		}, "530 5.7.0 Authentication credentials no longer valid; authenticate again"},
		{"server deleted", func(t *testing.T, ts *testServer) {
			if _, err := ts.Store.DeleteServer(ts.Inst.AccountID, ts.Inst.ServerID); err != nil {
				t.Fatal(err)
			}
		}, "530 5.7.0 Authentication credentials no longer valid; authenticate again"},
		{"SMTP turned off", func(t *testing.T, ts *testServer) {
			srv, err := ts.Store.Server(ts.Inst.ServerID)
			if err != nil {
				t.Fatal(err)
			}
			srv.SmtpApiActivated = false
			if err := ts.Store.UpdateServer(srv); err != nil {
				t.Fatal(err)
			}
		}, `535 5.7.8 Authentication credentials invalid: SMTP is turned off for server "Default"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t, testOptions{})
			c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
			if got := sendOne(c); !strings.HasPrefix(got, "250 2.0.0 OK: queued as") {
				t.Fatalf("before the change: %q", got)
			}
			tc.change(t, ts)
			if got := sendOne(c); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("MAIL after the change: %q, want %q", got, tc.want)
			}
			// The session's authentication is gone.
			c.expect("530 5.7.0 Authentication required", "MAIL FROM:<app@example.com>")
			if got := c.cmd("AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken)); strings.HasPrefix(got, "235") {
				t.Fatalf("AUTH again after the change: %q", got)
			}
		})
	}
}

// countingStore counts the reads a session makes of servers and tokens.
type countingStore struct {
	*bolt.Store
	reads *atomic.Int64
}

func (s countingStore) Server(id int64) (store.Server, error) {
	s.reads.Add(1)
	return s.Store.Server(id)
}

func (s countingStore) LookupToken(hash []byte) (store.Token, error) {
	s.reads.Add(1)
	return s.Store.LookupToken(hash)
}

// While nothing changes, checking the credentials before each MAIL reads
// nothing; a change to another server's tokens makes the next MAIL look
// once, and the session goes on.
func TestRevocationCheckReadsNothingWhileNothingChanges(t *testing.T) {
	var reads atomic.Int64
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		cs := countingStore{c.Store.(*bolt.Store), &reads}
		c.Store = cs
		c.Credentials = auth.NewAuthenticator(cs)
	}})
	other, err := ts.Store.CreateServer(store.Server{AccountID: ts.Inst.AccountID, Name: "other", DeliveryType: store.DeliverySandbox, SmtpApiActivated: true},
		auth.StoreToken(auth.NewToken()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
	before := reads.Load()
	for range 10 {
		if got := sendOne(c); !strings.HasPrefix(got, "250 2.0.0") {
			t.Fatal(got)
		}
	}
	if n := reads.Load() - before; n != 0 {
		t.Errorf("10 transactions read servers or tokens %d times, want 0", n)
	}
	if _, err := ts.Store.DeleteServer(ts.Inst.AccountID, other.ID); err != nil {
		t.Fatal(err)
	}
	before = reads.Load()
	for range 3 {
		if got := sendOne(c); !strings.HasPrefix(got, "250 2.0.0") {
			t.Fatalf("after another server was deleted: %q", got)
		}
	}
	if n := reads.Load() - before; n != 2 {
		t.Errorf("after a change: %d reads over 3 transactions, want 2 (the token and the server, once)", n)
	}
}
