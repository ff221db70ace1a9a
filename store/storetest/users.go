package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testUsers(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, srv := Init(t, s)
	other, err := s.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	ann, err := s.CreateUser(store.User{Email: "Ann@Example.com", PasswordHash: "$argon2id$x", CreatedAt: now})
	if err != nil || ann.ID == 0 || ann.Email != "ann@example.com" {
		t.Fatalf("create: %+v, %v", ann, err)
	}
	if _, err := s.CreateUser(store.User{Email: "ANN@example.com"}); !errors.Is(err, store.ErrUserExists) {
		t.Errorf("the same email: %v, want ErrUserExists", err)
	}
	bob, _ := s.CreateUser(store.User{Email: "bob@example.com", CreatedAt: now})
	if got, err := s.UserByEmail("ann@EXAMPLE.com"); err != nil || got.ID != ann.ID {
		t.Errorf("by email: %+v, %v", got, err)
	}
	ann.PasswordHash, ann.Email = "$argon2id$y", "changed@example.com"
	if err := s.UpdateUser(ann); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.User(ann.ID); got.PasswordHash != "$argon2id$y" || got.Email != "ann@example.com" {
		t.Errorf("after update: %+v (the email stays)", got)
	}

	// Memberships: Ann owns both accounts; Bob is a Member of one server.
	for _, m := range []store.Membership{
		{UserID: ann.ID, AccountID: acct.ID, Role: store.UserOwner},
		{UserID: ann.ID, AccountID: other.ID, Role: store.UserOwner},
		{UserID: bob.ID, AccountID: acct.ID, Role: store.UserMember, Servers: []store.ServerGrant{{ServerID: srv.ID, Access: store.AccessViewer}}},
	} {
		if err := s.SetMembership(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []store.Membership{
		{UserID: bob.ID, AccountID: acct.ID, Role: "Boss"},
		{UserID: bob.ID, AccountID: acct.ID, Role: store.UserAdmin, Servers: []store.ServerGrant{{ServerID: srv.ID, Access: store.AccessAdmin}}},
		{UserID: bob.ID, AccountID: acct.ID, Role: store.UserMember, Servers: []store.ServerGrant{{ServerID: srv.ID, Access: "Root"}}},
	} {
		if err := s.SetMembership(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if err := s.SetMembership(store.Membership{UserID: 9999, AccountID: acct.ID, Role: store.UserAdmin}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a member who is no user: %v", err)
	}
	// The last Owner stays one.
	if err := s.SetMembership(store.Membership{UserID: ann.ID, AccountID: acct.ID, Role: store.UserAdmin}); !errors.Is(err, store.ErrLastOwnerUser) {
		t.Errorf("demoting the last Owner: %v", err)
	}
	if err := s.RemoveMembership(acct.ID, ann.ID); !errors.Is(err, store.ErrLastOwnerUser) {
		t.Errorf("removing the last Owner: %v", err)
	}
	s = h.Reopen(t, s)
	if ms, err := s.Memberships(ann.ID); err != nil || len(ms) != 2 || ms[0].AccountID != acct.ID || ms[1].AccountID != other.ID {
		t.Errorf("Ann's memberships %+v, %v", ms, err)
	}
	if ms, err := s.AccountMembers(acct.ID); err != nil || len(ms) != 2 || ms[1].Servers[0].Access != store.AccessViewer {
		t.Errorf("the account's members %+v, %v", ms, err)
	}
	// Two Owners at once demoting each other: one of them stays Owner.
	if err := s.SetMembership(store.Membership{UserID: bob.ID, AccountID: acct.ID, Role: store.UserOwner}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, u := range []int64{ann.ID, bob.ID} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.SetMembership(store.Membership{UserID: u, AccountID: acct.ID, Role: store.UserAdmin})
		}()
	}
	wg.Wait()
	owners := 0
	ms, _ := s.AccountMembers(acct.ID)
	for _, m := range ms {
		if m.Role == store.UserOwner {
			owners++
		}
	}
	if owners != 1 {
		t.Errorf("%d Owners after both demoted each other at once, want 1", owners)
	}
	if err := s.RemoveMembership(other.ID, bob.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing a non-member: %v", err)
	}

	// One-time sign-in tokens.
	if err := s.AddSignInToken(store.SignInToken{Hash: "h1", UserID: bob.ID, Expires: now.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.AddSignInToken(store.SignInToken{Hash: "old", UserID: bob.ID, Expires: now.Add(-time.Minute)})
	if tok, err := s.TakeSignInToken("h1", now); err != nil || tok.UserID != bob.ID {
		t.Errorf("take: %+v, %v", tok, err)
	}
	for _, h := range []string{"h1", "old", "none"} {
		if _, err := s.TakeSignInToken(h, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("token %s: %v, want ErrNotFound (used, expired, unknown)", h, err)
		}
	}
}

func testMarks(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	now := time.Now()
	if first, err := s.Mark("digest:1:2026-11-30", now); err != nil || !first {
		t.Fatalf("first mark: %v, %v", first, err)
	}
	s = h.Reopen(t, s)
	if first, err := s.Mark("digest:1:2026-11-30", now); err != nil || first {
		t.Errorf("again after a reopen: %v, %v; want not first", first, err)
	}
	if first, _ := s.Mark("digest:2:2026-11-30", now); !first {
		t.Error("another key is not new")
	}
}
