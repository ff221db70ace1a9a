package api_test

import (
	"net/http"
	"testing"
	"time"
)

type statsOverview struct {
	Sent, Bounced, SMTPApiErrors             int64
	BounceRate                               float64
	SpamComplaints                           int64
	SpamComplaintsRate                       float64
	Opens, UniqueOpens, Tracked              int64
	WithLinkTracking, WithOpenTracking       int64
	TotalTrackedLinksSent                    int64
	UniqueLinksClicked, TotalClicks          int64
	WithClientRecorded, WithPlatformRecorded int64
}

type sendStats struct {
	Days []struct {
		Date string
		Sent int64
	}
	Sent int64
}

type bounceCounts struct{ HardBounce, SoftBounce, SMTPApiError, Transient int64 }

type bounceStats struct {
	Days []struct {
		Date string
		bounceCounts
	}
	bounceCounts
}

func TestStats(t *testing.T) {
	f := newFixture(t)
	today := time.Now().UTC().Format("2006-01-02")
	tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")

	t.Run("outbound", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/stats/outbound", f.tokA, nil)
		golden(t, "stats_outbound", body)
		var s statsOverview
		decodeInto(t, status, body, &s)
		// Four messages accepted; two recipients bounced (hard and soft).
		if s != (statsOverview{Sent: 4, Bounced: 2, BounceRate: 50}) {
			t.Errorf("%+v", s)
		}
		for q, want := range map[string]statsOverview{
			"tag=welcome":              {Sent: 2, Bounced: 2, BounceRate: 100},
			"tag=invoice":              {Sent: 1},
			"tag=nothing":              {},
			"fromdate=" + today:        {Sent: 4, Bounced: 2, BounceRate: 50},
			"todate=" + today:          {Sent: 4, Bounced: 2, BounceRate: 50},
			"fromdate=" + tomorrow:     {},
			"messagestream=outbound":   {Sent: 4, Bounced: 2, BounceRate: 50},
			"messagestream=broadcasts": {},
		} {
			var s statsOverview
			status, body := f.server(http.MethodGet, "/stats/outbound?"+q, f.tokA, nil)
			decodeInto(t, status, body, &s)
			if s != want {
				t.Errorf("%s: %+v, want %+v", q, s, want)
			}
		}
		// B's stats are B's alone.
		status, body = f.server(http.MethodGet, "/stats/outbound", f.tokB, nil)
		decodeInto(t, status, body, &s)
		if s != (statsOverview{Sent: 1, Bounced: 1, BounceRate: 100}) {
			t.Errorf("B: %+v", s)
		}
	})

	t.Run("sends", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/stats/outbound/sends", f.tokA, nil)
		golden(t, "stats_sends", body)
		var s sendStats
		decodeInto(t, status, body, &s)
		if s.Sent != 4 || len(s.Days) != 1 || s.Days[0].Date != today || s.Days[0].Sent != 4 {
			t.Errorf("%+v", s)
		}
		status, body = f.server(http.MethodGet, "/stats/outbound/sends?tag=invoice&fromdate="+today+"&todate="+today, f.tokA, nil)
		s = sendStats{}
		decodeInto(t, status, body, &s)
		if s.Sent != 1 || len(s.Days) != 1 || s.Days[0].Sent != 1 {
			t.Errorf("invoice: %+v", s)
		}
		status, body = f.server(http.MethodGet, "/stats/outbound/sends?fromdate="+tomorrow, f.tokA, nil)
		s = sendStats{}
		decodeInto(t, status, body, &s)
		if s.Sent != 0 || s.Days == nil || len(s.Days) != 0 {
			t.Errorf("tomorrow: %s", body)
		}
	})

	t.Run("bounces", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/stats/outbound/bounces", f.tokA, nil)
		golden(t, "stats_bounces", body)
		var s bounceStats
		decodeInto(t, status, body, &s)
		want := bounceCounts{HardBounce: 1, SoftBounce: 1}
		if s.bounceCounts != want || len(s.Days) != 1 || s.Days[0].Date != today || s.Days[0].bounceCounts != want {
			t.Errorf("%+v", s)
		}
		status, body = f.server(http.MethodGet, "/stats/outbound/bounces?tag=invoice", f.tokA, nil)
		s = bounceStats{}
		decodeInto(t, status, body, &s)
		if s.bounceCounts != (bounceCounts{}) || len(s.Days) != 0 {
			t.Errorf("invoice: %+v", s)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, path := range []string{"/stats/outbound", "/stats/outbound/sends", "/stats/outbound/bounces"} {
			for _, q := range []string{"fromdate=soon", "todate=2024-02-30", "fromdate=" + tomorrow + "&todate=" + today} {
				status, body := f.server(http.MethodGet, path+"?"+q, f.tokA, nil)
				wantError(t, status, body, http.StatusUnprocessableEntity, 900)
			}
			status, body := f.server(http.MethodGet, path, "", nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
			status, body = f.account(http.MethodGet, path, f.Inst.AccountToken, nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
		}
	})
}
