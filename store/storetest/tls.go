package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testSTSPolicies(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	if _, err := s.STSPolicy("example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("STSPolicy of an unknown domain: %v, want ErrNotFound", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	p := store.STSPolicy{Domain: "Example.COM", ID: "20261204", Text: "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n",
		FetchedAt: now, Expires: now.Add(24 * time.Hour)}
	if err := s.PutSTSPolicy(p); err != nil {
		t.Fatal(err)
	}
	p.ID = "20261205"
	if err := s.PutSTSPolicy(p); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	got, err := s.STSPolicy("example.com")
	if err != nil || got.ID != "20261205" || got.Text != p.Text || !got.Expires.Equal(p.Expires) || !got.FetchedAt.Equal(now) {
		t.Errorf("after a reopen: %+v, %v; want %+v", got, err, p)
	}
}

func testTLSReports(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	day := store.TLSDay(time.Now()).Add(-48 * time.Hour)
	sts := store.TLSPolicyRef{Type: store.TLSPolicySTS, Strings: []string{"version: STSv1", "mode: testing"}, MXHosts: []string{"mx.a.example"}}
	none := store.TLSPolicyRef{Type: store.TLSPolicyNotFound}
	mismatch := &store.TLSFailure{ResultType: "certificate-host-mismatch", ReceivingMX: "mx.a.example", ReceivingIP: "192.0.2.1"}
	if _, err := s.TLSReportDay(day, "a.example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no report yet: %v, want ErrNotFound", err)
	}

	// Two nodes count into the same reports at once: nothing is lost.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.AddTLSResults([]store.TLSResult{
				{Day: day, Domain: "A.example", Policy: sts, Count: 2},
				{Day: day, Domain: "a.example", Policy: sts, Failure: mismatch, Count: 1},
				{Day: day, Domain: "b.example", Policy: none, Count: 1},
				{Day: day.Add(24 * time.Hour), Domain: "a.example", Policy: sts, Count: 1},
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Today's counts are not a complete day yet.
	if err := s.AddTLSResults([]store.TLSResult{{Day: store.TLSDay(time.Now()), Domain: "a.example", Policy: none, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)

	d, err := s.TLSReportDay(day, "a.example")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Day.Equal(day) || d.Domain != "a.example" || len(d.Policies) != 1 {
		t.Fatalf("report %+v", d)
	}
	p := d.Policies[0]
	if p.Success != 40 || p.Failure != 20 || len(p.Failures) != 1 || p.Failures[0].Count != 20 || p.Failures[0].TLSFailure != *mismatch ||
		p.Type != store.TLSPolicySTS || len(p.MXHosts) != 1 {
		t.Errorf("counts %+v, want 40 successes and 20 host mismatches", p)
	}
	days, err := s.TLSReportDays(store.TLSDay(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 || days[0].Domain != "a.example" || days[1].Domain != "b.example" || !days[2].Day.Equal(day.Add(24*time.Hour)) {
		t.Fatalf("complete days: %+v, want a.example and b.example, then the next day", days)
	}
	if err := s.DeleteTLSReportDay(day, "A.example"); err != nil {
		t.Fatal(err)
	}
	if days, err := s.TLSReportDays(store.TLSDay(time.Now())); err != nil || len(days) != 2 {
		t.Errorf("after a delete: %d reports, %v; want 2", len(days), err)
	}
}
