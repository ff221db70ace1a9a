package bolt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/postern/postern/store"
)

var (
	// Recipient domain → its cached MTA-STS policy (JSON).
	bucketSTS = []byte("sts")
	// Day (8 bytes, Unix seconds) + recipient domain → TLSReportDay (JSON).
	bucketTLSReports = []byte("tlsreports")
)

// STSPolicy returns domain's cached policy.
func (s *Store) STSPolicy(domain string) (store.STSPolicy, error) {
	var p store.STSPolicy
	err := s.view(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketSTS), []byte(strings.ToLower(domain)), &p)
	})
	return p, err
}

// PutSTSPolicy replaces domain's cached policy.
func (s *Store) PutSTSPolicy(p store.STSPolicy) error {
	return s.update(func(tx *bbolt.Tx) error {
		return putJSON(tx.Bucket(bucketSTS), []byte(strings.ToLower(p.Domain)), p)
	})
}

func tlsReportKey(day time.Time, domain string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(day.Unix())), strings.ToLower(domain)...)
}

// AddTLSResults counts results into their days' reports.
func (s *Store) AddTLSResults(results []store.TLSResult) error {
	return s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketTLSReports)
		days := map[string]*store.TLSReportDay{}
		var order []string
		for _, r := range results {
			key := string(tlsReportKey(r.Day, r.Domain))
			d := days[key]
			if d == nil {
				d = &store.TLSReportDay{Day: r.Day.UTC(), Domain: strings.ToLower(r.Domain)}
				if err := getJSON(b, []byte(key), d); err != nil && err != store.ErrNotFound {
					return err
				}
				days[key] = d
				order = append(order, key)
			}
			d.Add(r)
		}
		for _, key := range order {
			if err := putJSON(b, []byte(key), days[key]); err != nil {
				return err
			}
		}
		return nil
	})
}

// TLSReportDays returns the reports of the days before before.
func (s *Store) TLSReportDays(before time.Time) ([]store.TLSReportDay, error) {
	var out []store.TLSReportDay
	end := binary.BigEndian.AppendUint64(nil, uint64(before.Unix()))
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTLSReports).Cursor()
		for k, v := c.First(); k != nil && bytes.Compare(k[:8], end) < 0; k, v = c.Next() {
			var d store.TLSReportDay
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// TLSReportDay returns one day's report to domain.
func (s *Store) TLSReportDay(day time.Time, domain string) (store.TLSReportDay, error) {
	var d store.TLSReportDay
	err := s.view(func(tx *bbolt.Tx) error {
		return getJSON(tx.Bucket(bucketTLSReports), tlsReportKey(day, domain), &d)
	})
	return d, err
}

// DeleteTLSReportDay forgets a report.
func (s *Store) DeleteTLSReportDay(day time.Time, domain string) error {
	return s.update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketTLSReports).Delete(tlsReportKey(day, domain))
	})
}
