package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testServerReadsSeeEveryChange(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, _ := Init(t, s)
	srv, err := s.CreateServer(store.Server{AccountID: a.ID, Name: "acme"}, Token("c1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{10, 20, 0, 20} {
		edit, err := s.Server(srv.ID) // fills the cache
		if err != nil {
			t.Fatal(err)
		}
		edit.RateLimitPerMinute = limit
		if err := s.UpdateServer(edit); err != nil {
			t.Fatal(err)
		}
		got, err := s.Server(srv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RateLimitPerMinute != limit {
			t.Fatalf("after setting the rate limit to %d, Server says %d", limit, got.RateLimitPerMinute)
		}
	}
	if _, err := s.DeleteServer(a.ID, srv.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Server(srv.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted server: %v, want ErrNotFound", err)
	}
}

func testDomainReadsSeeEveryChange(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	a, _ := Init(t, s)
	d, err := s.CreateDomain(store.Domain{AccountID: a.ID, Name: "example.com", Keys: []store.DKIMKey{{Algorithm: "rsa", Selector: "a"}}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.DomainByName("Example.com")
	if err != nil || got.Keys[0].Selector != "a" {
		t.Fatalf("DomainByName: %+v, %v", got, err)
	}
	got.Keys[0].Selector = "changed by a caller"
	if again, _ := s.DomainByName("example.com"); again.Keys[0].Selector != "a" {
		t.Fatalf("a caller's change reached the cache: %+v", again.Keys)
	}
	if _, err := s.ModifyDomain(d.ID, func(x *store.Domain) error {
		x.Keys = []store.DKIMKey{{Algorithm: "rsa", Selector: "b"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DomainByName("example.com"); got.Keys[0].Selector != "b" {
		t.Fatalf("after rotation: %+v", got.Keys)
	}
	if err := s.DeleteDomain(d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DomainByName("example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted domain: %v", err)
	}
}
