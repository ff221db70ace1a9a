package bolt

import (
	"bytes"
	"encoding/json"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

// Top level: one bucket per domain ID, holding reports (ID → report
// JSON), received (ID → bytes as received), keys (org NUL report ID →
// ID, parsed reports only) and known (IP → empty).
var (
	bucketDMARC         = []byte("dmarc")
	bucketDMARCReports  = []byte("reports")
	bucketDMARCReceived = []byte("received")
	bucketDMARCKeys     = []byte("keys")
	bucketDMARCKnown    = []byte("known")
)

func dmarcDomain(tx *bbolt.Tx, domainID int64, create bool) (*bbolt.Bucket, error) {
	top := tx.Bucket(bucketDMARC)
	if !create {
		if b := top.Bucket(itob(domainID)); b != nil {
			return b, nil
		}
		return nil, nil
	}
	if tx.Bucket(bucketDomains).Get(itob(domainID)) == nil {
		return nil, store.ErrNotFound
	}
	b, err := top.CreateBucketIfNotExists(itob(domainID))
	if err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketDMARCReports, bucketDMARCReceived, bucketDMARCKeys, bucketDMARCKnown} {
		if _, err := b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// AddDMARCReport files a report.
func (s *Store) AddDMARCReport(r store.DMARCReport, received []byte) (store.DMARCReport, error) {
	err := s.update(func(tx *bbolt.Tx) error {
		b, err := dmarcDomain(tx, r.DomainID, true)
		if err != nil {
			return err
		}
		key := []byte(r.OrgName + "\x00" + r.ExternalID)
		if r.Status == store.DMARCParsed && b.Bucket(bucketDMARCKeys).Get(key) != nil {
			return store.ErrDuplicateReport
		}
		id, err := tx.Bucket(bucketDMARC).NextSequence()
		if err != nil {
			return err
		}
		r.ID = int64(id)
		if r.Status == store.DMARCParsed {
			if err := b.Bucket(bucketDMARCKeys).Put(key, itob(r.ID)); err != nil {
				return err
			}
		}
		if err := b.Bucket(bucketDMARCReceived).Put(itob(r.ID), received); err != nil {
			return err
		}
		return putJSON(b.Bucket(bucketDMARCReports), itob(r.ID), r)
	})
	return r, err
}

// DMARCReports lists a domain's reports, newest first, without rows.
func (s *Store) DMARCReports(domainID int64) ([]store.DMARCReport, error) {
	var out []store.DMARCReport
	err := s.view(func(tx *bbolt.Tx) error {
		b, _ := dmarcDomain(tx, domainID, false)
		if b == nil {
			return nil
		}
		c := b.Bucket(bucketDMARCReports).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var r store.DMARCReport
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			r.Rows = nil
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// DMARCReport returns one report with its rows and what was received.
func (s *Store) DMARCReport(domainID, id int64) (store.DMARCReport, []byte, error) {
	var r store.DMARCReport
	var received []byte
	err := s.view(func(tx *bbolt.Tx) error {
		b, _ := dmarcDomain(tx, domainID, false)
		if b == nil {
			return store.ErrNotFound
		}
		if err := getJSON(b.Bucket(bucketDMARCReports), itob(id), &r); err != nil {
			return err
		}
		received = bytes.Clone(b.Bucket(bucketDMARCReceived).Get(itob(id)))
		return nil
	})
	return r, received, err
}

// DMARCParsedReports returns the parsed reports overlapping [from, to].
func (s *Store) DMARCParsedReports(domainID int64, from, to time.Time) ([]store.DMARCReport, error) {
	var out []store.DMARCReport
	err := s.view(func(tx *bbolt.Tx) error {
		b, _ := dmarcDomain(tx, domainID, false)
		if b == nil {
			return nil
		}
		return b.Bucket(bucketDMARCReports).ForEach(func(_, v []byte) error {
			var r store.DMARCReport
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Status == store.DMARCParsed && !r.End.Before(from) && !r.Begin.After(to) {
				out = append(out, r)
			}
			return nil
		})
	})
	return out, err
}

// SetDMARCSourceKnown marks a source address known, or not.
func (s *Store) SetDMARCSourceKnown(domainID int64, ip string, known bool) error {
	return s.update(func(tx *bbolt.Tx) error {
		b, err := dmarcDomain(tx, domainID, true)
		if err != nil {
			return err
		}
		if known {
			return b.Bucket(bucketDMARCKnown).Put([]byte(ip), nil)
		}
		return b.Bucket(bucketDMARCKnown).Delete([]byte(ip))
	})
}

// DMARCKnownSources returns the domain's known source addresses.
func (s *Store) DMARCKnownSources(domainID int64) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.view(func(tx *bbolt.Tx) error {
		b, _ := dmarcDomain(tx, domainID, false)
		if b == nil {
			return nil
		}
		return b.Bucket(bucketDMARCKnown).ForEach(func(k, _ []byte) error {
			out[string(k)] = true
			return nil
		})
	})
	return out, err
}

// deleteDMARC drops a deleted domain's reports.
func deleteDMARC(tx *bbolt.Tx, domainID int64) error {
	if tx.Bucket(bucketDMARC).Bucket(itob(domainID)) == nil {
		return nil
	}
	return tx.Bucket(bucketDMARC).DeleteBucket(itob(domainID))
}
