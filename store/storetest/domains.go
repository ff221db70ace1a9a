package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testDomainModifyAndDelete(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	d, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com", Keys: []store.DKIMKey{{Algorithm: "rsa", Selector: "a"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Domain(d.ID); err != nil || got.Name != "example.com" {
		t.Fatalf("Domain: %+v %v", got, err)
	}
	if _, err := s.Domain(d.ID + 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Domain of a missing ID: %v", err)
	}

	// ModifyDomain changes what fn changes, but not the identity.
	got, err := s.ModifyDomain(d.ID, func(x *store.Domain) error {
		x.PendingKeys = []store.DKIMKey{{Algorithm: "rsa", Selector: "b"}}
		x.Name, x.AccountID, x.ID = "evil.example", 99, 42
		return nil
	})
	if err != nil || got.Name != "example.com" || got.AccountID != acct.ID || got.ID != d.ID || len(got.PendingKeys) != 1 {
		t.Fatalf("ModifyDomain: %+v %v", got, err)
	}
	stop := errors.New("no")
	if _, err := s.ModifyDomain(d.ID, func(x *store.Domain) error { x.PendingKeys = nil; return stop }); !errors.Is(err, stop) {
		t.Fatalf("ModifyDomain with an error: %v", err)
	}
	if again, _ := s.Domain(d.ID); len(again.PendingKeys) != 1 {
		t.Fatalf("a failed ModifyDomain changed the domain: %+v", again)
	}
	if _, err := s.ModifyDomain(d.ID+1, func(*store.Domain) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ModifyDomain of a missing ID: %v", err)
	}

	// DeleteDomain frees the name.
	if err := s.DeleteDomain(d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DomainByName("example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DomainByName after delete: %v", err)
	}
	if err := s.DeleteDomain(d.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com"}, time.Now()); err != nil {
		t.Fatalf("the name is not free again: %v", err)
	}
}

func testQueuedSignatureBy(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	now := time.Now()
	m := NewMessage(srv.ID, now)
	if err := Enqueue(s, m, []byte("From: a@example.com\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if found, err := s.QueuedSignatureBy("example.com", []string{"old"}); err != nil || found {
		t.Fatalf("unsigned queue: %v %v", found, err)
	}
	entries, err := s.Claim(store.ClaimRequest{Now: now.Add(time.Second), Lease: time.Minute, Max: 1})
	if err != nil || len(entries) != 1 {
		t.Fatalf("claim: %v %v", entries, err)
	}
	sig := "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=Example.com;\r\n s=old; h=From; bh=x; b=y\r\n"
	if err := s.RecordAttempt(store.Attempt{
		Entry: entries[0], At: now, Retry: now.Add(time.Hour),
		Outcomes:  []store.Outcome{{Recipient: m.Recipients[0], Type: store.EventTransient}},
		Signature: []byte(sig), Signed: true,
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		domain    string
		selectors []string
		want      bool
	}{
		{"example.com", []string{"old"}, true},
		{"EXAMPLE.com.", []string{"new", "OLD"}, true},
		{"example.com", []string{"new"}, false},
		{"other.example", []string{"old"}, false},
		{"example.com", nil, false},
	} {
		if found, err := s.QueuedSignatureBy(tc.domain, tc.selectors); err != nil || found != tc.want {
			t.Errorf("QueuedSignatureBy(%s, %v) = %v, %v; want %v", tc.domain, tc.selectors, found, err, tc.want)
		}
	}
}
