package app

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/postern/postern/internal/dkim"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// A verified domain stays verified while the daily check finds its
// records; missing for domain-reverify-days in a row, it loses its
// verification, with an event in its account's log, and another account
// that proves the name may then claim it. A check that finds them again
// in between starts the count anew.
func TestReverifyDomains(t *testing.T) {
	dns := dnstest.New(t)
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := dkim.Generate("brand.example")
	if err != nil {
		t.Fatal(err)
	}
	d, err := st.CreateDomain(store.Domain{AccountID: inst.AccountID, Name: "brand.example", Keys: keys}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.DKIMVerified = true
	if err := st.UpdateDomain(d); err != nil {
		t.Fatal(err)
	}
	publish := func() {
		for _, k := range keys {
			dns.SetTXT(k.Host, k.TextValue)
		}
	}
	unpublish := func() {
		for _, k := range keys {
			dns.SetTXT(k.Host)
		}
	}
	resolver := relay.NewResolver(dns.Addr())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const failFor = 48 * time.Hour
	day0 := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	check := func(at time.Time) store.Domain {
		t.Helper()
		reverifyDomains(st, resolver, at, failFor, log)
		got, err := st.Domain(d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	publish()
	if got := check(day0); !got.DKIMVerified || !got.FailingSince.IsZero() {
		t.Fatalf("published: %+v", got)
	}
	unpublish()
	if got := check(day0.Add(24 * time.Hour)); !got.DKIMVerified || !got.FailingSince.Equal(day0.Add(24*time.Hour)) {
		t.Fatalf("missing once: verified %v, failing since %v", got.DKIMVerified, got.FailingSince)
	}
	publish()
	if got := check(day0.Add(48 * time.Hour)); !got.DKIMVerified || !got.FailingSince.IsZero() {
		t.Fatalf("found again: verified %v, failing since %v", got.DKIMVerified, got.FailingSince)
	}
	unpublish()
	for i, want := range []bool{true, true, false} {
		at := day0.Add(time.Duration(72+24*i) * time.Hour)
		if got := check(at); got.DKIMVerified != want {
			t.Fatalf("missing %d days in a row: verified %v, want %v", i, got.DKIMVerified, want)
		}
	}
	events, err := st.AccountEvents(inst.AccountID)
	if err != nil || len(events) != 1 || events[0].Type != store.AccountEventDomainUnverified {
		t.Fatalf("the account's log: %+v %v", events, err)
	}
	other, err := st.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claim, err := st.CreateDomain(store.Domain{AccountID: other.ID, Name: "brand.example"}, time.Now()); err != nil || !claim.Claim {
		t.Fatalf("a claim on the name once unverified: %+v %v", claim, err)
	}
}
