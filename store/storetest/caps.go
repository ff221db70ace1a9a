package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

// Each cap refuses the creation past it with a *CapError naming its
// setting, and concurrent creations cannot overshoot it.
func testCapsRefuseCreationPastTheLimit(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{DomainsPerAccount: 3, ServersPerAccount: 2, TokensPerServer: 2})
	acct, srv := Init(t, s)
	now := time.Now()
	wantCap := func(err error, setting string) {
		t.Helper()
		var ce *store.CapError
		if !errors.As(err, &ce) || ce.Setting != setting || !errors.Is(err, store.ErrCapReached) {
			t.Fatalf("got %v, want the cap %s", err, setting)
		}
	}
	if _, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Second"}, Token("second"), now); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Third"}, Token("third"), now)
	wantCap(err, "max-servers-per-account")
	if _, err := s.AddServerToken(srv.ID, Token("srv-2"), now); err != nil {
		t.Fatal(err)
	}
	_, err = s.AddServerToken(srv.ID, Token("srv-3"), now)
	wantCap(err, "max-tokens-per-server")

	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.CreateDomain(store.Domain{AccountID: acct.ID, Name: fmt.Sprintf("d%d.example", i)}, now)
		}()
	}
	wg.Wait()
	made := 0
	for _, err := range errs {
		if err == nil {
			made++
			continue
		}
		wantCap(err, "max-domains-per-account")
	}
	if list, _ := s.Domains(acct.ID); made != 3 || len(list) != 3 {
		t.Fatalf("%d domains made, %d listed; the cap is 3", made, len(list))
	}
	// A cap counts per account: another account starts afresh.
	other, err := s.CreateAccount("Other", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: other.ID, Name: "other.example"}, now); err != nil {
		t.Fatal(err)
	}
}
