package storetest

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testDMARCReports(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	d, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.org"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	r := store.DMARCReport{DomainID: d.ID, OrgName: "google.com", ExternalID: "123", Begin: day, End: day.Add(24*time.Hour - time.Second),
		Messages: 5, Status: store.DMARCParsed, Via: "mail", ReceivedAt: day.Add(30 * time.Hour),
		Rows: []store.DMARCRow{{SourceIP: "192.0.2.1", Count: 5, Disposition: "none", DKIM: "pass", SPF: "fail", HeaderFrom: "example.com", DKIMPassSelectors: []string{"pm1"}}}}
	first, err := s.AddDMARCReport(r, []byte("<feedback>1</feedback>"))
	if err != nil || first.ID == 0 {
		t.Fatalf("add: %+v, %v", first, err)
	}
	if _, err := s.AddDMARCReport(r, []byte("again")); !errors.Is(err, store.ErrDuplicateReport) {
		t.Errorf("the same report twice: %v, want ErrDuplicateReport", err)
	}
	// The same ID from another organisation, or for another domain, is
	// another report; a failed one is always kept.
	r2 := r
	r2.OrgName = "yahoo.com"
	if _, err := s.AddDMARCReport(r2, nil); err != nil {
		t.Errorf("another organisation: %v", err)
	}
	r3 := r
	r3.DomainID = other.ID
	if _, err := s.AddDMARCReport(r3, nil); err != nil {
		t.Errorf("another domain: %v", err)
	}
	failed := store.DMARCReport{DomainID: d.ID, Status: store.DMARCFailed, Error: "not XML", Via: "upload", ReceivedAt: day}
	for range 2 {
		if _, err := s.AddDMARCReport(failed, []byte("garbage")); err != nil {
			t.Errorf("a failed report: %v", err)
		}
	}
	if _, err := s.AddDMARCReport(store.DMARCReport{DomainID: 99999, Status: store.DMARCFailed}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a report of no domain: %v", err)
	}
	s = h.Reopen(t, s)
	list, err := s.DMARCReports(d.ID)
	if err != nil || len(list) != 4 || list[0].Status != store.DMARCFailed || list[3].ID != first.ID || list[3].Rows != nil {
		t.Fatalf("list %+v, %v", list, err)
	}
	got, received, err := s.DMARCReport(d.ID, first.ID)
	if err != nil || len(got.Rows) != 1 || got.Rows[0].DKIMPassSelectors[0] != "pm1" || !bytes.Equal(received, []byte("<feedback>1</feedback>")) {
		t.Errorf("report %+v, %q, %v", got, received, err)
	}
	if _, _, err := s.DMARCReport(other.ID, first.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("through another domain: %v", err)
	}
	if in, err := s.DMARCParsedReports(d.ID, day.Add(12*time.Hour), day.Add(48*time.Hour)); err != nil || len(in) != 2 || len(in[0].Rows) != 1 {
		t.Errorf("overlapping: %+v, %v", in, err)
	}
	if in, _ := s.DMARCParsedReports(d.ID, day.Add(48*time.Hour), day.Add(72*time.Hour)); len(in) != 0 {
		t.Errorf("outside the range: %+v", in)
	}
	if err := s.SetDMARCSourceKnown(d.ID, "192.0.2.1", true); err != nil {
		t.Fatal(err)
	}
	if known, err := s.DMARCKnownSources(d.ID); err != nil || !known["192.0.2.1"] || len(known) != 1 {
		t.Errorf("known %v, %v", known, err)
	}
	s.SetDMARCSourceKnown(d.ID, "192.0.2.1", false)
	if known, _ := s.DMARCKnownSources(d.ID); len(known) != 0 {
		t.Errorf("unmarked: %v", known)
	}
	// Deleting the domain deletes its reports.
	if err := s.DeleteDomain(d.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.DMARCReports(d.ID); len(list) != 0 {
		t.Errorf("a deleted domain's reports: %d", len(list))
	}
}
