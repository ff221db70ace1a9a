package store

import (
	"errors"
	"testing"
	"time"
)

// Server answers from its cache of decoded records; every change to a
// server must show at the next read, and a deleted server must be gone.
func TestServerReadsSeeEveryChange(t *testing.T) {
	s, _ := openTest(t, Options{})
	a, _ := initTest(t, s)
	srv, err := s.CreateServer(Server{AccountID: a.ID, Name: "acme"}, testToken("c1"), time.Now())
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
	if _, err := s.Server(srv.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted server: %v, want ErrNotFound", err)
	}
}
