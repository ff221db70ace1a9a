package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/store"
)

// statDay is the layout of a stats day.
const statDay = "2006-01-02"

// queueStat adds one to counter for the day of at (UTC), in stream and
// tag, in the shard of the connection (see migration 0004); a tag new on a day that has store.MaxTagsPerDay tags already
// counts under store.OtherTag.
func queueStat(b *pgx.Batch, serverID int64, at time.Time, stream, tag, counter string) {
	b.Queue(`INSERT INTO stats (server_id, day, stream, tag, counter, n, shard)
		SELECT $1, $2::date, $3, CASE
			WHEN EXISTS (SELECT 1 FROM stats WHERE server_id = $1 AND day = $2::date AND stream = $3 AND tag = $4) THEN $4
			WHEN (SELECT count(*) FROM (SELECT DISTINCT stream, tag FROM stats WHERE server_id = $1 AND day = $2::date LIMIT $6) x) < $6 THEN $4
			ELSE $7 END, $5, 1, pg_backend_pid() % 16
		ON CONFLICT (server_id, day, stream, tag, counter, shard) DO UPDATE SET n = stats.n + 1`,
		serverID, at.UTC().Format(statDay), stream, tag, counter, store.MaxTagsPerDay, store.OtherTag)
}

// Stats returns a server's daily counters, day by day, summed over the
// streams and tags q does not name.
func (s *Store) Stats(serverID int64, q store.StatsQuery) ([]store.DayStats, error) {
	var out []store.DayStats
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		out = nil
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		from, to := "0001-01-01", "9999-12-31"
		if !q.From.IsZero() {
			from = q.From.UTC().Format(statDay)
		}
		if !q.To.IsZero() {
			to = q.To.UTC().Format(statDay)
		}
		rows, err := tx.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), counter, sum(n)::bigint FROM stats
			WHERE server_id = $1 AND day BETWEEN $2::date AND $3::date AND ($4 = '' OR stream = $4) AND ($5 = '' OR tag = $5)
			GROUP BY day, counter ORDER BY day, counter`, serverID, from, to, q.Stream, q.Tag)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var date, counter string
			var n int64
			if err := rows.Scan(&date, &counter, &n); err != nil {
				return err
			}
			if len(out) == 0 || out[len(out)-1].Date != date {
				out = append(out, store.DayStats{Date: date, Counts: map[string]int64{}})
			}
			out[len(out)-1].Counts[counter] += n
		}
		return rows.Err()
	})
	return out, err
}

// SentSince counts, up to limit (0: all), the server's messages received
// since.
func (s *Store) SentSince(serverID int64, since time.Time, limit int) (int, error) {
	n := 0
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		var lim *int
		if limit > 0 {
			lim = &limit
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM messages WHERE server_id = $1 AND received_ns >= $2
			ORDER BY received_ns DESC LIMIT $3) x`, serverID, max(since.UnixNano(), 0), lim).Scan(&n)
	})
	return n, err
}

// SentOn counts the messages the server received on the UTC day of day.
func (s *Store) SentOn(serverID int64, day time.Time) (int64, error) {
	var n int64
	err := s.view(func(ctx context.Context, tx pgx.Tx) error {
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT coalesce(sum(n), 0)::bigint FROM stats WHERE server_id = $1 AND day = $2::date AND counter = $3`,
			serverID, day.UTC().Format(statDay), store.StatSent).Scan(&n)
	})
	return n, err
}

// DeliveryStats counts the server's inactive recipients and its bounces
// by type.
func (s *Store) DeliveryStats(serverID int64) (inactive int, byType map[string]int, err error) {
	err = s.view(func(ctx context.Context, tx pgx.Tx) error {
		inactive, byType = 0, map[string]int{}
		if err := requireServer(ctx, tx, serverID); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM suppressions WHERE server_id = $1`, serverID).Scan(&inactive); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT doc->>'Type', count(*) FROM bounces WHERE server_id = $1 GROUP BY 1`, serverID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var typ string
			var n int
			if err := rows.Scan(&typ, &n); err != nil {
				return err
			}
			byType[typ] = n
		}
		return rows.Err()
	})
	return inactive, byType, err
}
