package api

import (
	"math"
	"net/http"

	"github.com/postern/postern/store"
)

// codeStatsQuery is Postmark's ErrorCode for a bad stats query.
const codeStatsQuery = 900

// registerStats adds the stats endpoints.
func (a *API) registerStats() {
	a.mux.HandleFunc("GET /stats/outbound", a.server(a.statsOverview))
	a.mux.HandleFunc("GET /stats/outbound/sends", a.server(a.statsSends))
	a.mux.HandleFunc("GET /stats/outbound/bounces", a.server(a.statsBounces))
}

// stats reads the days the request's tag, fromdate, todate and
// messagestream select.
func (a *API) stats(r *http.Request, srv store.Server) ([]store.DayStats, error) {
	from, to, err := dateRange(r, codeStatsQuery)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	return a.cfg.Store.Stats(srv.ID, store.StatsQuery{From: from, To: to, Tag: q.Get("tag"), Stream: q.Get("messagestream")})
}

// rate is a percentage with three decimals, as Postmark gives it.
func rate(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return math.Round(float64(part)/float64(whole)*100*1000) / 1000
}

func (a *API) statsOverview(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	days, err := a.stats(r, srv)
	if err != nil {
		return err
	}
	var sent, bounced, apiErrors, complaints int64
	for _, d := range days {
		sent += d.Counts[store.StatSent]
		bounced += store.Bounced(d.Counts)
		apiErrors += d.Counts["SMTPApiError"]
		complaints += d.Counts["SpamComplaint"]
	}
	// Postern tracks no opens or clicks: those stay zero. Complaints
	// arrive as ARF reports at the inbound listener.
	writeJSON(w, http.StatusOK, struct {
		Sent, Bounced, SMTPApiErrors             int64
		BounceRate                               float64
		SpamComplaints                           int64
		SpamComplaintsRate                       float64
		Opens, UniqueOpens, Tracked              int64
		WithLinkTracking, WithOpenTracking       int64
		TotalTrackedLinksSent                    int64
		UniqueLinksClicked, TotalClicks          int64
		WithClientRecorded, WithPlatformRecorded int64
	}{Sent: sent, Bounced: bounced, SMTPApiErrors: apiErrors, BounceRate: rate(bounced, sent),
		SpamComplaints: complaints, SpamComplaintsRate: rate(complaints, sent)})
	return nil
}

func (a *API) statsSends(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	days, err := a.stats(r, srv)
	if err != nil {
		return err
	}
	type day struct {
		Date string
		Sent int64
	}
	out := struct {
		Days []day
		Sent int64
	}{Days: []day{}}
	for _, d := range days {
		if n := d.Counts[store.StatSent]; n > 0 {
			out.Days = append(out.Days, day{d.Date, n})
			out.Sent += n
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// The bounce types of Postmark's bounce stats; other types count in
// /stats/outbound's Bounced only.
type bounceCounts struct {
	HardBounce, SoftBounce, SMTPApiError, Transient int64
}

func (a *API) statsBounces(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	days, err := a.stats(r, srv)
	if err != nil {
		return err
	}
	type day struct {
		Date string
		bounceCounts
	}
	out := struct {
		Days []day
		bounceCounts
	}{Days: []day{}}
	for _, d := range days {
		c := bounceCounts{d.Counts["HardBounce"], d.Counts["SoftBounce"], d.Counts["SMTPApiError"], d.Counts["Transient"]}
		if c == (bounceCounts{}) {
			continue
		}
		out.Days = append(out.Days, day{d.Date, c})
		out.HardBounce += c.HardBounce
		out.SoftBounce += c.SoftBounce
		out.SMTPApiError += c.SMTPApiError
		out.Transient += c.Transient
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
