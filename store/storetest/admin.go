package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testOperatorAccount(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	if _, err := s.OperatorAccount(); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before Initialize: %v, want ErrNotFound", err)
	}
	a, _ := Init(t, s)
	id, err := s.OperatorAccount()
	if err != nil || id != a.ID {
		t.Fatalf("OperatorAccount = %d, %v; want %d", id, err, a.ID)
	}
	other, err := s.CreateAccount("Customer", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := s.OperatorAccount(); id == other.ID {
		t.Fatal("a new account became the operator")
	}
}

func testServerDefaultsAndUpdate(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, def := Init(t, s)
	srv, err := s.CreateServer(store.Server{AccountID: a.ID, Name: "acme-production"}, Token("p1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if srv.DeliveryType != store.DeliveryLive || srv.TrackLinks != store.TrackLinksNone || len(srv.InboundHash) != 32 {
		t.Fatalf("defaults: %+v", srv)
	}
	// DeliveryType and InboundHash cannot change; the name must stay unique.
	edit := srv
	edit.DeliveryType, edit.InboundHash, edit.Pinned, edit.Name = store.DeliverySandbox, "x", true, "Acme-Production"
	if err := s.UpdateServer(edit); err != nil {
		t.Fatal(err)
	}
	got, err := s.Server(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.DeliveryType != store.DeliveryLive || got.InboundHash != srv.InboundHash || !got.Pinned || got.Name != "Acme-Production" {
		t.Fatalf("after update: %+v", got)
	}
	edit.Name = "DEFAULT"
	if err := s.UpdateServer(edit); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("renaming to another server's name: %v, want ErrDuplicate", err)
	}
	// Another account may use the same name.
	b, err := s.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateServer(store.Server{AccountID: b.ID, Name: def.Name}, Token("o1"), time.Now()); err != nil {
		t.Fatalf("same name in another account: %v", err)
	}
}

func testListServers(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, _ := Init(t, s)
	for i, name := range []string{"zeta", "Alpha", "beta", "Omega"} {
		srv := store.Server{AccountID: a.ID, Name: name, Pinned: name == "zeta" || name == "Omega"}
		if _, err := s.CreateServer(srv, Token("t"+name+string(rune('0'+i))), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	other, _ := s.CreateAccount("Other", time.Now())
	if _, err := s.CreateServer(store.Server{AccountID: other.ID, Name: "aardvark"}, Token("other"), time.Now()); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListServers(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, srv := range list {
		names = append(names, srv.Name)
	}
	want := []string{"Omega", "zeta", "Alpha", "beta", "Default"}
	if len(names) != len(want) {
		t.Fatalf("names %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names %q, want %q", names, want)
		}
	}
}

func testDeleteServer(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, keep := Init(t, s)
	srv, err := s.CreateServer(store.Server{AccountID: a.ID, Name: "doomed"}, Token("doomed1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddServerToken(srv.ID, Token("doomed2"), time.Now()); err != nil {
		t.Fatal(err)
	}
	// A queued message, so there is a queue and mail to remove.
	if err := Enqueue(s, NewMessage(srv.ID, time.Now()), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := Enqueue(s, NewMessage(keep.ID, time.Now()), []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: a.ID, Name: "example.com"}, time.Now()); err != nil {
		t.Fatal(err)
	}

	other, _ := s.CreateAccount("Other", time.Now())
	if _, err := s.DeleteServer(other.ID, srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another account deleting: %v, want ErrNotFound", err)
	}
	got, err := s.DeleteServer(a.ID, srv.ID)
	if err != nil || got.Name != "doomed" {
		t.Fatalf("DeleteServer = %+v, %v", got, err)
	}
	if _, err := s.Server(srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the server remains: %v", err)
	}
	for _, name := range []string{"doomed1", "doomed2"} {
		if _, err := s.LookupToken(Token(name).Hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token %s remains: %v", name, err)
		}
	}
	if _, err := s.LookupToken(Token("srv").Hash); err != nil {
		t.Errorf("another server's token went too: %v", err)
	}
	q, err := s.Queue(10)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || q[0].ServerID != keep.ID {
		t.Fatalf("queue after delete: %+v", q)
	}
	if ds, err := s.Domains(a.ID); err != nil || len(ds) != 1 {
		t.Fatalf("the account's domains: %+v, %v", ds, err)
	}
	if _, err := s.DeleteServer(a.ID, srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := Enqueue(s, NewMessage(srv.ID, time.Now()), []byte("late")); !errors.Is(err, store.ErrServerMissing) {
		t.Fatalf("enqueue on a deleted server: %v", err)
	}
	selfCheck(t, s)
}

func testServerTokens(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	t0 := time.Now()
	if _, err := s.AddServerToken(srv.ID, Token("srv2"), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	dup := Token("srv")
	dup.Hash = []byte("another-hash-with-the-same-prefix-xxxxxxxx")
	if _, err := s.AddServerToken(srv.ID, dup, t0); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second token with prefix srv: %v, want ErrDuplicate", err)
	}
	if _, err := s.AddServerToken(999, Token("nowhere"), t0); !errors.Is(err, store.ErrServerMissing) {
		t.Fatalf("token for a missing server: %v", err)
	}
	toks, err := s.ServerTokens(srv.ID)
	if err != nil || len(toks) != 2 || toks[0].Prefix != "srv" || toks[1].Prefix != "srv2" {
		t.Fatalf("ServerTokens = %+v, %v", toks, err)
	}
	if toks[1].Kind != store.KindServer || toks[1].ServerID != srv.ID || toks[1].AccountID != srv.AccountID {
		t.Fatalf("added token %+v", toks[1])
	}
	if err := s.RevokeServerToken(srv.ID, "srv"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeServerToken(srv.ID, "srv"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking twice: %v", err)
	}
	if _, err := s.LookupToken(Token("srv").Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoked token still found: %v", err)
	}
	if _, err := s.LookupToken(Token("srv2").Hash); err != nil {
		t.Fatalf("the other token: %v", err)
	}
	// An account token with the prefix is not a server token.
	if err := s.RevokeServerToken(srv.ID, "acct"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an account token as a server's: %v", err)
	}
}

func testAccountTokens(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, _ := Init(t, s)
	if _, err := s.AddAccountToken(a.ID, "root", Token("x"), time.Now()); err == nil {
		t.Fatal("a token of an unknown role was stored")
	}
	adm, err := s.AddAccountToken(a.ID, store.RoleAdmin, Token("adm"), time.Now())
	if err != nil || adm.Role != store.RoleAdmin || adm.Kind != store.KindAccount {
		t.Fatalf("AddAccountToken = %+v, %v", adm, err)
	}
	toks, err := s.AccountTokens(a.ID)
	if err != nil || len(toks) != 2 {
		t.Fatalf("AccountTokens = %+v, %v", toks, err)
	}
	if err := s.RevokeAccountToken(a.ID, "acct", nil); !errors.Is(err, store.ErrLastOwner) {
		t.Fatalf("revoking the last owner token: %v, want ErrLastOwner", err)
	}
	refuse := errors.New("refused")
	if err := s.RevokeAccountToken(a.ID, "adm", func(store.Token) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("allow refusing: %v", err)
	}
	if _, err := s.AddAccountToken(a.ID, store.RoleOwner, Token("own2"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAccountToken(a.ID, "acct", nil); err != nil {
		t.Fatalf("revoking an owner token while another remains: %v", err)
	}
	if err := s.RevokeAccountToken(a.ID, "adm", nil); err != nil {
		t.Fatal(err)
	}
	if toks, _ := s.AccountTokens(a.ID); len(toks) != 1 || toks[0].Prefix != "own2" {
		t.Fatalf("left: %+v", toks)
	}
}

func testAccounts(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	op, _ := Init(t, s)
	owner := Token("cust")
	c, err := s.CreateAccountWithOwner("Customer", owner, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.LookupToken(owner.Hash)
	if err != nil || tok.Kind != store.KindAccount || tok.Role != store.RoleOwner || tok.AccountID != c.ID {
		t.Fatalf("the new owner token: %+v, %v", tok, err)
	}
	all, err := s.Accounts()
	if err != nil || len(all) != 2 || all[0].ID != op.ID || all[1].Name != "Customer" {
		t.Fatalf("Accounts = %+v, %v", all, err)
	}
	if err := s.DeleteAccount(op.ID); !errors.Is(err, store.ErrOperator) {
		t.Fatalf("deleting the operator: %v", err)
	}
	srv, err := s.CreateServer(store.Server{AccountID: c.ID, Name: "x"}, Token("cx"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(c.ID); !errors.Is(err, store.ErrHasServers) {
		t.Fatalf("deleting with a server: %v", err)
	}
	if _, err := s.DeleteServer(c.ID, srv.ID); err != nil {
		t.Fatal(err)
	}
	d, err := s.CreateDomain(store.Domain{AccountID: c.ID, Name: "customer.example"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(c.ID); !errors.Is(err, store.ErrHasServers) {
		t.Fatalf("deleting with a domain: %v", err)
	}
	if err := s.DeleteDomain(d.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupToken(owner.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the deleted account's token remains: %v", err)
	}
	if err := s.DeleteAccount(c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
}
