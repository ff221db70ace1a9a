package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

// sameSession reports whether got is want, times compared as instants.
func sameSession(got, want store.Session) bool {
	return got.Hash == want.Hash && got.UserID == want.UserID && got.AccountID == want.AccountID &&
		got.CSRF == want.CSRF && got.CreatedAt.Equal(want.CreatedAt) && got.LastSeen.Equal(want.LastSeen)
}

func testSessions(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	other, err := s.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ann, err := s.CreateUser(store.User{Email: "ann@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := s.CreateUser(store.User{Email: "bob@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	// Nanoseconds survive: the idle boundary is exact.
	now := time.Date(2026, 12, 4, 9, 0, 0, 123456789, time.UTC)
	a1 := store.Session{Hash: "a1", UserID: ann.ID, AccountID: acct.ID, CSRF: "c-a1", CreatedAt: now, LastSeen: now}
	for _, sess := range []store.Session{
		a1,
		{Hash: "a2", UserID: ann.ID, AccountID: other.ID, CSRF: "c-a2", CreatedAt: now, LastSeen: now.Add(time.Minute)},
		{Hash: "b1", UserID: bob.ID, AccountID: acct.ID, CSRF: "c-b1", CreatedAt: now, LastSeen: now.Add(2 * time.Minute)},
	} {
		if err := s.CreateSession(sess); err != nil {
			t.Fatalf("create %s: %v", sess.Hash, err)
		}
	}
	if got, err := s.Session("a1"); err != nil || !sameSession(got, a1) {
		t.Errorf("read back: %+v, %v; want %+v", got, err, a1)
	}
	if err := s.CreateSession(store.Session{Hash: "a1", UserID: bob.ID, AccountID: acct.ID}); !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("a hash filed twice: %v, want ErrDuplicate", err)
	}
	if got, _ := s.Session("a1"); got.UserID != ann.ID {
		t.Errorf("a refused duplicate changed the session: %+v", got)
	}
	for _, bad := range []store.Session{
		{Hash: "nouser", UserID: 9999, AccountID: acct.ID},
		{Hash: "noaccount", UserID: ann.ID, AccountID: 9999},
	} {
		if err := s.CreateSession(bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s: %v, want ErrNotFound", bad.Hash, err)
		}
	}
	if _, err := s.Session("none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a missing session: %v, want ErrNotFound", err)
	}

	// An update moves the session to another account and marks it seen;
	// its user and creation stay.
	moved := a1
	moved.AccountID, moved.CSRF, moved.LastSeen = other.ID, "c-a1-new", now.Add(3*time.Minute)
	if err := s.UpdateSession(store.Session{Hash: "a1", UserID: bob.ID, AccountID: moved.AccountID, CSRF: moved.CSRF, CreatedAt: now.Add(time.Hour), LastSeen: moved.LastSeen}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session("a1"); err != nil || !sameSession(got, moved) {
		t.Errorf("after update: %+v, %v; want %+v", got, err, moved)
	}
	if err := s.UpdateSession(store.Session{Hash: "none", UserID: ann.ID, AccountID: acct.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating a missing session: %v, want ErrNotFound", err)
	}
	if _, err := s.Session("none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating a missing session filed it: %v", err)
	}

	// Sessions survive a restart.
	s = h.Reopen(t, s)
	if got, err := s.Session("a1"); err != nil || !sameSession(got, moved) {
		t.Errorf("after a reopen: %+v, %v; want %+v", got, err, moved)
	}

	if err := s.DeleteSession("b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session("b1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted session: %v, want ErrNotFound", err)
	}
	if err := s.DeleteSession("b1"); err != nil {
		t.Errorf("deleting a missing session: %v, want no error", err)
	}

	// A user's sessions go together, nobody else's.
	if err := s.CreateSession(store.Session{Hash: "b2", UserID: bob.ID, AccountID: acct.ID, CreatedAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteUserSessions(ann.ID); err != nil || n != 2 {
		t.Errorf("deleting Ann's sessions: %d, %v; want 2", n, err)
	}
	for _, hash := range []string{"a1", "a2"} {
		if _, err := s.Session(hash); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Ann's session %s after deleting hers: %v", hash, err)
		}
	}
	if _, err := s.Session("b2"); err != nil {
		t.Errorf("Bob's session after deleting Ann's: %v", err)
	}
	if n, err := s.DeleteUserSessions(ann.ID); err != nil || n != 0 {
		t.Errorf("deleting Ann's sessions again: %d, %v; want 0", n, err)
	}
	// A user's new session after the others went is kept, and goes in turn.
	if err := s.CreateSession(store.Session{Hash: "a3", UserID: ann.ID, AccountID: acct.ID, CreatedAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteUserSessions(ann.ID); err != nil || n != 1 {
		t.Errorf("deleting Ann's new session: %d, %v; want 1", n, err)
	}
	if err := s.DeleteSession("b2"); err != nil {
		t.Fatal(err)
	}

	// Idle sessions: those last seen strictly before t go.
	for i := range 4 {
		sess := store.Session{Hash: fmt.Sprintf("idle%d", i), UserID: bob.ID, AccountID: acct.ID, CreatedAt: now, LastSeen: now.Add(time.Duration(i) * time.Nanosecond)}
		if err := s.CreateSession(sess); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteSessionsIdleSince(now.Add(2 * time.Nanosecond)); err != nil || n != 2 {
		t.Errorf("deleting idle sessions: %d, %v; want 2 (seen before, not at, the time)", n, err)
	}
	for i, want := range []bool{false, false, true, true} {
		_, err := s.Session(fmt.Sprintf("idle%d", i))
		if kept := err == nil; kept != want {
			t.Errorf("idle%d kept %v, want %v (%v)", i, kept, want, err)
		}
	}
	if n, err := s.DeleteSessionsIdleSince(now); err != nil || n != 0 {
		t.Errorf("nothing idle: %d, %v", n, err)
	}
	// What stays of a user's sessions after the idle ones went is still
	// found by user.
	if n, err := s.DeleteUserSessions(bob.ID); err != nil || n != 2 {
		t.Errorf("deleting Bob's remaining sessions: %d, %v; want 2", n, err)
	}

	// A session goes with the account it works in.
	if err := s.CreateSession(store.Session{Hash: "gone", UserID: bob.ID, AccountID: other.ID, CreatedAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(store.Session{Hash: "stays", UserID: bob.ID, AccountID: acct.ID, CreatedAt: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session("gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a session of a deleted account: %v, want ErrNotFound", err)
	}
	if _, err := s.Session("stays"); err != nil {
		t.Errorf("a session of another account after one was deleted: %v", err)
	}
	if n, err := s.DeleteUserSessions(bob.ID); err != nil || n != 1 {
		t.Errorf("Bob's sessions after his account went: %d, %v; want 1", n, err)
	}
	selfCheck(t, s)
}

func testUpdateAccount(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	Init(t, s)
	created := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	a, err := s.CreateAccount("Customer", created)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Account(a.ID); got.RequireTwoFactor {
		t.Errorf("a new account requires two factors: %+v", got)
	}
	// The name and settings change; the ID and the creation time stay.
	if err := s.UpdateAccount(store.Account{ID: a.ID, Name: "Customer Ltd", RequireTwoFactor: true, CreatedAt: created.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	got, err := s.Account(a.ID)
	if err != nil || got.ID != a.ID || got.Name != "Customer Ltd" || !got.RequireTwoFactor || !got.CreatedAt.Equal(created) {
		t.Errorf("after update: %+v, %v", got, err)
	}
	all, err := s.Accounts()
	if err != nil || len(all) != 2 || all[1].ID != a.ID || all[1].Name != "Customer Ltd" || !all[1].RequireTwoFactor {
		t.Errorf("Accounts after update: %+v, %v", all, err)
	}
	got.RequireTwoFactor = false
	if err := s.UpdateAccount(got); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Account(a.ID); got.RequireTwoFactor || got.Name != "Customer Ltd" {
		t.Errorf("two factors turned off: %+v", got)
	}
	if err := s.UpdateAccount(store.Account{ID: 9999, Name: "Nobody"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating a missing account: %v, want ErrNotFound", err)
	}
	if _, err := s.Account(9999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updating a missing account created it: %v", err)
	}
}
