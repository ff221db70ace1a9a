package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// STSPolicy returns domain's cached policy.
func (s *Store) STSPolicy(domain string) (store.STSPolicy, error) {
	var p store.STSPolicy
	err := s.readOne(func(ctx context.Context, q querier) error {
		var doc []byte
		if err := q.QueryRow(ctx, `SELECT doc FROM sts_policies WHERE domain = $1`, strings.ToLower(domain)).Scan(&doc); err != nil {
			return err
		}
		return json.Unmarshal(doc, &p)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return p, store.ErrNotFound
	}
	return p, err
}

// PutSTSPolicy replaces domain's cached policy.
func (s *Store) PutSTSPolicy(p store.STSPolicy) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO sts_policies (domain, doc) VALUES ($1, $2)
		ON CONFLICT (domain) DO UPDATE SET doc = excluded.doc`, strings.ToLower(p.Domain), doc)
	return s.batch(b)
}

// AddTLSResults counts results into their days' reports. Each row is
// created if missing and then locked, so that nodes counting into the
// same report at once add up rather than overwrite each other.
func (s *Store) AddTLSResults(results []store.TLSResult) error {
	type key struct {
		day    int64
		domain string
	}
	byDay := map[key][]store.TLSResult{}
	for _, r := range results {
		k := key{r.Day.Unix(), strings.ToLower(r.Domain)}
		byDay[k] = append(byDay[k], r)
	}
	keys := make([]key, 0, len(byDay))
	for k := range byDay {
		keys = append(keys, k)
	}
	// One order for every node: two of them never wait for each other's
	// rows in opposite orders.
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].day != keys[j].day {
			return keys[i].day < keys[j].day
		}
		return keys[i].domain < keys[j].domain
	})
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		for _, k := range keys {
			d := store.TLSReportDay{Day: time.Unix(k.day, 0).UTC(), Domain: k.domain}
			if _, err := tx.Exec(ctx, `INSERT INTO tls_reports (day, domain, doc) VALUES ($1, $2, '{}') ON CONFLICT DO NOTHING`, k.day, k.domain); err != nil {
				return err
			}
			var doc []byte
			if err := tx.QueryRow(ctx, `SELECT doc FROM tls_reports WHERE day = $1 AND domain = $2 FOR UPDATE`, k.day, k.domain).Scan(&doc); err != nil {
				return err
			}
			if string(doc) != "{}" {
				if err := json.Unmarshal(doc, &d); err != nil {
					return err
				}
			}
			for _, r := range byDay[k] {
				d.Add(r)
			}
			out, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE tls_reports SET doc = $3 WHERE day = $1 AND domain = $2`, k.day, k.domain, out); err != nil {
				return err
			}
		}
		return nil
	})
}

// TLSReportDays returns the reports of the days before before.
func (s *Store) TLSReportDays(before time.Time) ([]store.TLSReportDay, error) {
	var out []store.TLSReportDay
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT doc FROM tls_reports WHERE day < $1 AND doc <> '{}' ORDER BY day, domain`, before.Unix())
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var doc []byte
			if err := rows.Scan(&doc); err != nil {
				return err
			}
			var d store.TLSReportDay
			if err := json.Unmarshal(doc, &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return rows.Err()
	})
	return out, err
}

// TLSReportDay returns one day's report to domain.
func (s *Store) TLSReportDay(day time.Time, domain string) (store.TLSReportDay, error) {
	var d store.TLSReportDay
	err := s.readOne(func(ctx context.Context, q querier) error {
		var doc []byte
		if err := q.QueryRow(ctx, `SELECT doc FROM tls_reports WHERE day = $1 AND domain = $2 AND doc <> '{}'`, day.Unix(), strings.ToLower(domain)).Scan(&doc); err != nil {
			return err
		}
		return json.Unmarshal(doc, &d)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return d, store.ErrNotFound
	}
	return d, err
}

// DeleteTLSReportDay forgets a report.
func (s *Store) DeleteTLSReportDay(day time.Time, domain string) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM tls_reports WHERE day = $1 AND domain = $2`, day.Unix(), strings.ToLower(domain))
	return s.batch(b)
}
