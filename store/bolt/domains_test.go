package bolt

import (
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
	bbolt "go.etcd.io/bbolt"
)

func TestCheckFindsDomainIndexProblems(t *testing.T) {
	s, _ := openTest(t, Options{})
	acct, _ := storetest.Init(t, s)
	d, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDomainNames).Put([]byte("stale.example"), itob(d.ID))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "domain name stale.example: names domain") {
		t.Fatalf("Check with a stale name: %v", err)
	}
	if err := s.update(func(tx *bbolt.Tx) error {
		names := tx.Bucket(bucketDomainNames)
		if err := names.Delete([]byte("stale.example")); err != nil {
			return err
		}
		return names.Delete([]byte("example.com"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "not in the name index") {
		t.Fatalf("Check with a missing name: %v", err)
	}
	if err := s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketDomains).Delete(itob(d.ID))
	}); err != nil {
		t.Fatal(err)
	}
}
