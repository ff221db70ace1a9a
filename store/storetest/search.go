package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testSearchMessages(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 5; i++ {
		m := NewMessage(a.ID, base.Add(time.Duration(i)*time.Hour))
		if i%2 == 1 {
			m.Tag, m.Subject, m.Recipients = "odd", "Odd one", []string{"bob@example.org"}
		}
		if err := Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	enqueueN(t, s, b.ID, 3, base)
	for _, c := range []struct {
		name  string
		q     store.MessageQuery
		total int
		want  []string
	}{
		{"all", store.MessageQuery{Count: 10}, 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"page", store.MessageQuery{Count: 2, Offset: 1}, 5, []string{ids[3], ids[2]}},
		{"count 0: the total only", store.MessageQuery{}, 5, nil},
		{"tag", store.MessageQuery{Count: 10, Tag: "ODD"}, 2, []string{ids[3], ids[1]}},
		{"tag paged", store.MessageQuery{Count: 1, Offset: 1, Tag: "odd"}, 2, []string{ids[1]}},
		{"recipient", store.MessageQuery{Count: 10, Recipient: "BOB@example.org"}, 2, []string{ids[3], ids[1]}},
		{"recipient in To", store.MessageQuery{Count: 10, Recipient: "alice@example.net"}, 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"from header", store.MessageQuery{Count: 10, FromEmail: "APP@example.com"}, 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"subject", store.MessageQuery{Count: 10, Subject: "odd"}, 2, []string{ids[3], ids[1]}},
		{"status", store.MessageQuery{Count: 10, Statuses: []string{store.StatusSent}}, 0, nil},
		{"metadata", store.MessageQuery{Count: 10, Metadata: map[string]string{"client-id": "42"}}, 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"stream", store.MessageQuery{Count: 10, Stream: "broadcast"}, 0, nil},
		{"dates", store.MessageQuery{Count: 10, From: base.Add(time.Hour), To: base.Add(3 * time.Hour)}, 3, []string{ids[3], ids[2], ids[1]}},
		{"dates and tag", store.MessageQuery{Count: 10, From: base.Add(time.Hour), To: base.Add(2 * time.Hour), Tag: "odd"}, 1, []string{ids[1]}},
		{"after the last", store.MessageQuery{Count: 10, From: base.Add(5 * time.Hour)}, 0, nil},
		{"before the first", store.MessageQuery{Count: 10, To: base.Add(-time.Nanosecond)}, 0, nil},
		{"to far ahead", store.MessageQuery{Count: 10, To: base.Add(100 * time.Hour)}, 5, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}},
	} {
		res, err := s.SearchMessages(a.ID, c.q)
		total, got := res.Total, res.Messages
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, m := range got {
			gotIDs = append(gotIDs, m.MessageID)
		}
		if total != c.total || len(gotIDs) != len(c.want) {
			t.Errorf("%s: %d %v, want %d %v", c.name, total, gotIDs, c.total, c.want)
			continue
		}
		for i := range gotIDs {
			if gotIDs[i] != c.want[i] {
				t.Errorf("%s: %v, want %v", c.name, gotIDs, c.want)
				break
			}
		}
	}
	if res, _ := s.SearchMessages(b.ID, store.MessageQuery{Count: 10}); res.Total != 3 {
		t.Errorf("B: %d", res.Total)
	}
	if _, err := s.SearchMessages(99, store.MessageQuery{Count: 10}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing server: %v", err)
	}
}

func testStatsAndBounces(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	day1 := time.Date(2026, 3, 1, 23, 0, 0, 0, time.UTC)
	day2 := day1.Add(2 * time.Hour)
	m := NewMessage(a.ID, day1)
	m.Recipients = []string{"gone@example.org", "full@example.org", "ok@example.net"}
	if err := Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
		t.Fatal(err)
	}
	untagged := NewMessage(a.ID, day2)
	untagged.Tag = ""
	if err := Enqueue(s, untagged, []byte("x")); err != nil {
		t.Fatal(err)
	}
	enqueueN(t, s, b.ID, 1, day2)
	got, err := s.Claim(store.ClaimRequest{Now: day2, Lease: time.Minute, Max: 10, Allow: func(id int64) int {
		if id == a.ID {
			return 10
		}
		return 0
	}})
	if err != nil || len(got) != 2 {
		t.Fatalf("claim %v %v", got, err)
	}
	entry := got[0]
	if entry.MessageID != m.MessageID {
		entry = got[1]
	}
	err = s.RecordAttempt(store.Attempt{Entry: entry, At: day2, Outcomes: []store.Outcome{
		{Recipient: "Gone@example.org", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{DeliveryMessage: "550 5.1.1 no", BounceType: "HardBounce", BounceTypeCode: 1, Summary: "gone"}},
		{Recipient: "full@example.org", Type: store.EventBounced, Details: store.EventDetails{DeliveryMessage: "552 5.2.2 full", BounceType: "SoftBounce", BounceTypeCode: 4096}},
		{Recipient: "ok@example.net", Type: store.EventDelivered},
	}})
	if err != nil {
		t.Fatal(err)
	}

	// Stats: Sent on the day of receipt, bounces on the day they happened.
	days, err := s.Stats(a.ID, store.StatsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || days[0].Date != "2026-03-01" || days[0].Counts[store.StatSent] != 1 || len(days[0].Counts) != 1 ||
		days[1].Date != "2026-03-02" || days[1].Counts[store.StatSent] != 1 || days[1].Counts["HardBounce"] != 1 || days[1].Counts["SoftBounce"] != 1 {
		t.Fatalf("stats %+v", days)
	}
	for _, c := range []struct {
		q    store.StatsQuery
		want string
	}{
		{store.StatsQuery{Tag: "welcome"}, "2026-03-01:1/0 2026-03-02:0/1"},
		{store.StatsQuery{From: day2}, "2026-03-02:1/1"},
		{store.StatsQuery{To: day1}, "2026-03-01:1/0"},
		{store.StatsQuery{Stream: "outbound", From: day1, To: day2}, "2026-03-01:1/0 2026-03-02:1/1"},
		{store.StatsQuery{Stream: "other"}, ""},
	} {
		days, err := s.Stats(a.ID, c.q)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for i, d := range days {
			if i > 0 {
				got += " "
			}
			got += d.Date + ":" + itoa(d.Counts[store.StatSent]) + "/" + itoa(d.Counts["HardBounce"])
		}
		if got != c.want {
			t.Errorf("%+v: %q, want %q", c.q, got, c.want)
		}
	}

	// Bounces: one per Bounced outcome, events naming them.
	bres, err := s.Bounces(a.ID, store.BounceQuery{Count: 10})
	total, bounces := bres.Total, bres.Bounces
	if err != nil || total != 2 || len(bounces) != 2 {
		t.Fatalf("bounces %d %+v %v", total, bounces, err)
	}
	soft, hard := bounces[0], bounces[1] // newest first
	if hard.Email != "Gone@example.org" || hard.Type != "HardBounce" || !hard.Inactive || !hard.DumpAvailable ||
		hard.Tag != "welcome" || hard.From != "app@example.com" || hard.Subject != "Hello" || !hard.BouncedAt.Equal(day2) ||
		hard.ID <= 0 || hard.ID > store.MaxBounceID || soft.Inactive || soft.Type != "SoftBounce" {
		t.Fatalf("hard %+v soft %+v", hard, soft)
	}
	evs, _ := s.Events(a.ID, m.MessageID)
	if evs[0].BounceID != hard.ID || evs[1].BounceID != soft.ID || evs[2].BounceID != 0 {
		t.Fatalf("events %+v", evs)
	}
	yes := true
	if r, _ := s.Bounces(a.ID, store.BounceQuery{Count: 10, Inactive: &yes}); r.Total != 1 {
		t.Errorf("inactive: %d", r.Total)
	}
	if r, _ := s.Bounces(a.ID, store.BounceQuery{Count: 10, Email: "GONE", Type: "hardbounce", Tag: "Welcome", MessageID: m.MessageID, From: day2, To: day2}); r.Total != 1 {
		t.Errorf("all filters: %d", r.Total)
	}
	if r, _ := s.Bounces(a.ID, store.BounceQuery{Count: 10, To: day1}); r.Total != 0 {
		t.Errorf("before: %d", r.Total)
	}
	inactive, byType, err := s.DeliveryStats(a.ID)
	if err != nil || inactive != 1 || byType["HardBounce"] != 1 || byType["SoftBounce"] != 1 {
		t.Errorf("delivery stats %d %v %v", inactive, byType, err)
	}

	// Another server's bounce is not found, and activating it does nothing.
	if _, err := s.Bounce(b.ID, hard.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B reads A's bounce: %v", err)
	}
	if _, err := s.ActivateBounce(b.ID, hard.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B activates A's bounce: %v", err)
	}
	if _, ok, _ := s.Suppressed(a.ID, "gone@example.org"); !ok {
		t.Fatal("suppression lifted by another server")
	}
	got1, err := s.ActivateBounce(a.ID, hard.ID)
	if err != nil || got1.Inactive {
		t.Fatalf("activate %+v %v", got1, err)
	}
	if _, ok, _ := s.Suppressed(a.ID, "gone@example.org"); ok {
		t.Fatal("still suppressed")
	}
	selfCheck(t, s)
}

func itoa(n int64) string {
	return string(rune('0' + n))
}

func testStatsTagsPerDayCapped(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, srv := Init(t, s)
	day := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	send := func(at time.Time, tag string) {
		t.Helper()
		m := NewMessage(srv.ID, at)
		m.Tag = tag
		if err := Enqueue(s, m, []byte("Subject: x\r\n\r\nx")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range store.MaxTagsPerDay {
		send(day, fmt.Sprintf("tag-%04d", i))
	}
	send(day, "one-too-many")
	send(day, "and-another")
	send(day, "tag-0007")
	send(day.Add(24*time.Hour), "one-too-many")
	sent := func(q store.StatsQuery) int64 {
		t.Helper()
		days, err := s.Stats(srv.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, d := range days {
			n += d.Counts[store.StatSent]
		}
		return n
	}
	if n := sent(store.StatsQuery{Tag: store.OtherTag}); n != 2 {
		t.Errorf("%s counted %d messages, want the 2 new tags past the cap", store.OtherTag, n)
	}
	if n := sent(store.StatsQuery{Tag: "tag-0007"}); n != 2 {
		t.Errorf("a tag counted before the cap: %d, want 2", n)
	}
	if n := sent(store.StatsQuery{Tag: "one-too-many", From: day.Add(24 * time.Hour)}); n != 1 {
		t.Errorf("the next day: %d, want 1 under its own tag", n)
	}
	if n := sent(store.StatsQuery{}); n != store.MaxTagsPerDay+4 {
		t.Errorf("all tags: %d, want %d", n, store.MaxTagsPerDay+4)
	}
}
