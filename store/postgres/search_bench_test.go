package postgres_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/storetest"
)

// BenchmarkSearchMillion searches a store of a million messages of 1,000
// servers (filled with SQL, in about a minute), as the API's outbound
// search does: a page of 50, newest first, with no filter or one, on a
// server drawn at random. It reports the p50 and p99 of one search:
//
//	go test -run '^$' -bench SearchMillion -benchtime 2000x -timeout 30m ./store/postgres/
func BenchmarkSearchMillion(b *testing.B) {
	const servers, perServer = 1000, 1000
	s := open(b, pgtest.New(b), store.Caps{})
	acct, _ := storetest.Init(b, s)
	conn, err := pgx.Connect(context.Background(), s.dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	ctx := context.Background()
	for i, sql := range []string{
		`INSERT INTO servers (id, account_id, name_key, doc)
			SELECT 1000 + i, $1, 'bench-' || i, jsonb_build_object('ID', 1000 + i, 'AccountID', $1::bigint, 'Name', 'bench-' || i, 'DeliveryType', 'Live')
			FROM generate_series(1, 1000) i`,
		`INSERT INTO messages (server_id, message_id, received_ns, status, doc)
			SELECT 1000 + (i % 1000) + 1, 'msg-' || i, 1764000000000000000 + i::bigint * 1000000000, CASE WHEN i % 10 = 0 THEN 'Bounced' ELSE 'Sent' END,
				jsonb_build_object('MessageID', 'msg-' || i, 'ServerID', 1000 + (i % 1000) + 1, 'EnvelopeFrom', 'app@example.com',
					'From', 'App <app@example.com>', 'To', jsonb_build_array(jsonb_build_object('Email', 'rcpt-' || (i % 5000) || '@example.net')),
					'Recipients', jsonb_build_array('rcpt-' || (i % 5000) || '@example.net'), 'Subject', 'Invoice ' || i,
					'Tag', 'tag-' || (i % 20), 'MessageStream', 'outbound', 'Status', CASE WHEN i % 10 = 0 THEN 'Bounced' ELSE 'Sent' END,
					'ReceivedAt', to_char(to_timestamp(1764000000 + i) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
			FROM generate_series(1, 1000000) i`,
		`ANALYZE`,
	} {
		var args []any
		if i == 0 {
			args = []any{acct.ID}
		}
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			b.Fatal(err)
		}
	}
	queries := []store.MessageQuery{
		{Count: 50},
		{Count: 50, Tag: "tag-7"},
		{Count: 50, Recipient: "rcpt-123@example.net"},
		{Count: 50, Subject: "invoice 9"},
		{Count: 50, Statuses: []string{"Bounced"}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := queries[i%len(queries)]
		start := time.Now()
		res, err := s.SearchMessages(int64(1001+rng.IntN(servers)), q)
		took = append(took, time.Since(start))
		if err != nil || (q.Tag == "" && q.Recipient == "" && q.Subject == "" && q.Statuses == nil && res.Total != perServer) {
			b.Fatalf("search %+v: %d, %v", q, res.Total, err)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
