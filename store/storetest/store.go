package storetest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

// Token is a new token named name, with a hash of its own.
func Token(name string) store.NewToken {
	return store.NewToken{Hash: []byte("hash-of-" + name + "-padded-to-be-long-enough"), Token: store.Token{Prefix: name}}
}

// Init initialises s with the operator account and a Live server.
func Init(t testing.TB, s store.Backend) (store.Account, store.Server) {
	t.Helper()
	at := Token("acct")
	at.Role = store.RoleOwner
	a, srv, err := s.Initialize(store.InitParams{
		AccountName:  "Operator",
		AccountToken: at,
		Server:       store.Server{Name: "Default", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		ServerToken:  Token("srv"),
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return a, srv
}

// NewMessage is a message of serverID received at at, to one recipient.
func NewMessage(serverID int64, at time.Time) *store.Message {
	return &store.Message{
		MessageID:     store.NewMessageID(),
		ServerID:      serverID,
		EnvelopeFrom:  "app@example.com",
		From:          "App <app@example.com>",
		To:            []store.Address{{Email: "alice@example.net", Name: "Alice"}},
		Recipients:    []string{"alice@example.net"},
		Subject:       "Hello",
		Tag:           "welcome",
		Metadata:      map[string]string{"client-id": "42"},
		MessageStream: "outbound",
		ReceivedAt:    at.UTC(),
		Size:          5,
		Status:        store.StatusQueued,
	}
}

func testInitializeOnce(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, srv := Init(t, s)
	if acct.ID != 1 || srv.ID != 1 || srv.AccountID != acct.ID {
		t.Fatalf("account %+v server %+v", acct, srv)
	}
	tok, err := s.LookupToken(Token("srv").Hash)
	if err != nil || tok.Kind != store.KindServer || tok.ServerID != srv.ID || tok.AccountID != acct.ID {
		t.Fatalf("server token: %+v %v", tok, err)
	}
	tok, err = s.LookupToken(Token("acct").Hash)
	if err != nil || tok.Kind != store.KindAccount || tok.Role != store.RoleOwner || tok.AccountID != acct.ID {
		t.Fatalf("account token: %+v %v", tok, err)
	}
	_, _, err = s.Initialize(store.InitParams{AccountName: "Again", AccountToken: Token("a2"), Server: store.Server{Name: "X"}, ServerToken: Token("s2")}, time.Now())
	if !errors.Is(err, store.ErrInitialized) {
		t.Fatalf("second Initialize: %v, want ErrInitialized", err)
	}
	if _, err := s.LookupToken(Token("a2").Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Initialize left a token behind: %v", err)
	}
	if _, err := s.Account(2); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Initialize left an account behind: %v", err)
	}
}

func testEnqueueAndRead(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	msg := NewMessage(srv.ID, time.Now())
	raw := []byte("Subject: Hello\r\n\r\nHi\r\n")
	if err := Enqueue(s, msg, raw); err != nil {
		t.Fatal(err)
	}
	check := func(s store.Backend) {
		t.Helper()
		got, err := s.Message(srv.ID, msg.MessageID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Subject != "Hello" || got.Tag != "welcome" || got.Metadata["client-id"] != "42" ||
			got.Status != store.StatusQueued || !got.ReceivedAt.Equal(msg.ReceivedAt) || got.To[0].Name != "Alice" {
			t.Fatalf("stored metadata %+v", got)
		}
		gotRaw, err := s.RawMessage(srv.ID, msg.MessageID)
		if err != nil || !bytes.Equal(gotRaw, raw) {
			t.Fatalf("raw %q, %v", gotRaw, err)
		}
		q, err := s.Queue(10)
		if err != nil || len(q) != 1 || q[0].MessageID != msg.MessageID || q[0].ServerID != srv.ID {
			t.Fatalf("queue %+v, %v", q, err)
		}
		list, err := s.Messages(srv.ID, 10)
		if err != nil || len(list) != 1 || list[0].MessageID != msg.MessageID {
			t.Fatalf("messages %+v, %v", list, err)
		}
	}
	check(s)
	check(h.Reopen(t, s))
}

func testMessageOfAnotherServerIsNotFound(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, srv := Init(t, s)
	other, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Other"}, Token("other"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	msg := NewMessage(srv.ID, time.Now())
	if err := Enqueue(s, msg, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(other.ID, msg.MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other server reads the message: %v", err)
	}
	if _, err := s.RawMessage(other.ID, msg.MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other server reads the raw message: %v", err)
	}
}

func testDuplicateServerName(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	_, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "default"}, Token("dup"), time.Now())
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("got %v, want ErrDuplicate", err)
	}
	if _, err := s.LookupToken(Token("dup").Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused server left its token: %v", err)
	}
}

func testEnqueueUnknownServer(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	Init(t, s)
	if err := Enqueue(s, NewMessage(99, time.Now()), []byte("x")); !errors.Is(err, store.ErrServerMissing) {
		t.Fatalf("got %v, want ErrServerMissing", err)
	}
	if q, _ := s.Queue(10); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
}

func testBatchIsolatesAFailingWrite(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serverID := srv.ID
			if i%8 == 0 {
				serverID = 999 // no such server
			}
			errs[i] = Enqueue(s, NewMessage(serverID, time.Now()), []byte("x"))
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case i%8 == 0 && !errors.Is(err, store.ErrServerMissing):
			t.Errorf("write %d: %v, want ErrServerMissing", i, err)
		case i%8 != 0 && err != nil:
			t.Errorf("write %d: %v", i, err)
		case err == nil:
			ok++
		}
	}
	if q, _ := s.Queue(100); len(q) != ok {
		t.Fatalf("queue has %d entries, want %d", len(q), ok)
	}
}

func testClosedStoreRefusesWrites(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(s, NewMessage(srv.ID, time.Now()), []byte("x")); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func testNewServerKeepsDefaultRetention(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	if b := secondServer(t, s, acct.ID, "B"); b.RetentionDays != store.DefaultRetentionDays {
		t.Errorf("new server: RetentionDays %d, want %d", b.RetentionDays, store.DefaultRetentionDays)
	}
}
