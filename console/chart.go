package console

import (
	"time"

	"github.com/postern/postern/store"
)

// chart is a bar chart of sends and bounces per day, drawn as inline SVG
// by the stats template: coordinates are computed here so the template
// only places them.
type chart struct {
	Width, Height int
	Bars          []bar
	Max           int64 // the scale's top
	Sent, Bounced int64 // totals
	Days          int
}

type bar struct {
	Day                string
	Sent, Bounced      int64
	X, W               int
	SentY, SentH       int
	BouncedY, BouncedH int
	Label              bool // a date under this bar
}

const (
	chartWidth  = 720
	chartHeight = 200
)

// newChart lays out the n days up to now.
func newChart(days []store.DayStats, now time.Time, n int) chart {
	byDay := map[string]store.DayStats{}
	for _, d := range days {
		byDay[d.Date] = d
	}
	ch := chart{Width: chartWidth, Height: chartHeight, Days: n}
	for i := n - 1; i >= 0; i-- {
		date := now.AddDate(0, 0, -i).Format("2006-01-02")
		d := byDay[date]
		b := bar{Day: date, Sent: d.Counts[store.StatSent], Bounced: store.Bounced(d.Counts)}
		ch.Sent += b.Sent
		ch.Bounced += b.Bounced
		ch.Max = max(ch.Max, b.Sent, b.Bounced)
		ch.Bars = append(ch.Bars, b)
	}
	slot := chartWidth / n
	plot := chartHeight - 20 // room for the dates
	for i := range ch.Bars {
		b := &ch.Bars[i]
		b.X, b.W = i*slot+1, slot/2-1
		if ch.Max > 0 {
			b.SentH = int(b.Sent * int64(plot) / ch.Max)
			b.BouncedH = int(b.Bounced * int64(plot) / ch.Max)
		}
		b.SentY, b.BouncedY = plot-b.SentH, plot-b.BouncedH
		b.Label = i%7 == 0 || i == n-1
	}
	return ch
}
