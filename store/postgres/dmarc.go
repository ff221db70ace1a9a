package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// AddDMARCReport files a report.
func (s *Store) AddDMARCReport(r store.DMARCReport, received []byte) (store.DMARCReport, error) {
	if received == nil {
		received = []byte{}
	}
	begin, end := int64(0), int64(0) // a failed report may have no range
	if !r.Begin.IsZero() {
		begin, end = r.Begin.UnixNano(), r.End.UnixNano()
	}
	err := s.update(func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO dmarc_reports (domain_id, org, external_id, status, begin_ns, end_ns, doc, received)
			VALUES ($1, $2, $3, $4, $5, $6, '{}', $7) RETURNING id`,
			r.DomainID, r.OrgName, r.ExternalID, r.Status, begin, end, received).Scan(&r.ID)
		switch {
		case isUnique(err, "dmarc_reports_once"):
			return store.ErrDuplicateReport
		case isForeignKey(err):
			return store.ErrNotFound
		case err != nil:
			return err
		}
		doc, err := marshal(r)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE dmarc_reports SET doc = $2 WHERE id = $1`, r.ID, doc)
		return err
	})
	return r, err
}

// DMARCReports lists a domain's reports, newest first, without rows.
func (s *Store) DMARCReports(domainID int64) ([]store.DMARCReport, error) {
	return viewDocs[store.DMARCReport](s, `SELECT doc - 'Rows' FROM dmarc_reports WHERE domain_id = $1 ORDER BY id DESC`, domainID)
}

// DMARCReport returns one report with its rows and what was received.
func (s *Store) DMARCReport(domainID, id int64) (store.DMARCReport, []byte, error) {
	var r store.DMARCReport
	var received []byte
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		var doc []byte
		if err := tx.QueryRow(ctx, `SELECT doc, received FROM dmarc_reports WHERE domain_id = $1 AND id = $2`, domainID, id).Scan(&doc, &received); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		return json.Unmarshal(doc, &r)
	})
	return r, received, err
}

// DMARCParsedReports returns the parsed reports overlapping [from, to].
func (s *Store) DMARCParsedReports(domainID int64, from, to time.Time) ([]store.DMARCReport, error) {
	return viewDocs[store.DMARCReport](s, `SELECT doc FROM dmarc_reports WHERE domain_id = $1 AND status = 'parsed'
		AND end_ns >= $2 AND begin_ns <= $3 ORDER BY id`, domainID, from.UnixNano(), to.UnixNano())
}

// SetDMARCSourceKnown marks a source address known, or not.
func (s *Store) SetDMARCSourceKnown(domainID int64, ip string, known bool) error {
	return s.update(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if known {
			_, err = tx.Exec(ctx, `INSERT INTO dmarc_known (domain_id, ip) VALUES ($1, $2) ON CONFLICT DO NOTHING`, domainID, ip)
		} else {
			_, err = tx.Exec(ctx, `DELETE FROM dmarc_known WHERE domain_id = $1 AND ip = $2`, domainID, ip)
		}
		if isForeignKey(err) {
			return store.ErrNotFound
		}
		return err
	})
}

// DMARCKnownSources returns the domain's known source addresses.
func (s *Store) DMARCKnownSources(domainID int64) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT ip FROM dmarc_known WHERE domain_id = $1`, domainID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ip string
			if err := rows.Scan(&ip); err != nil {
				return err
			}
			out[ip] = true
		}
		return rows.Err()
	})
	return out, err
}
