package relay

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/store"
)

// BounceTypes lists every value of the type label of
// postern_recipients_bounced_total: Postmark's bounce type names, and
// "Unknown" for any other.
var BounceTypes = []string{
	BounceHard.String(), BounceTransient.String(), BounceDNSError.String(), BounceUnknown.String(),
	BounceSoft.String(), BounceBadEmailAddress.String(), BounceSpamComplaint.String(),
	BounceManuallyDeactivated.String(), BounceBlocked.String(), BounceSMTPAPIError.String(),
	BounceDMARCPolicy.String(),
}

// DKIMAlgorithms lists every value of the algorithm label of
// postern_dkim_signatures_total.
var DKIMAlgorithms = []string{"ed25519", "rsa"}

// TLSPolicies lists every value of the policy label of
// postern_delivery_tls_total, and TLSResults of its result label.
var (
	TLSPolicies = []string{PolicyNone, PolicyOpportunistic, PolicyMTASTS, PolicyDANE}
	TLSResults  = []string{"success", "failure"}
)

// metrics are the relay's. Without a Registerer they are made and
// counted all the same, and seen by nobody.
type metrics struct {
	delivered *prometheus.CounterVec   // server
	deferred  *prometheus.CounterVec   // server
	bounced   *prometheus.CounterVec   // server, type
	duration  *prometheus.HistogramVec // server
	dkim      *prometheus.CounterVec   // algorithm
	tls       *prometheus.CounterVec   // policy, result
}

func newMetrics(reg prometheus.Registerer, st Store, now func() time.Time) (*metrics, error) {
	m := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_recipients_delivered_total",
			Help: "Recipients delivered (a 2xx reply), by server ID. A Sandbox server's recipients are recorded as delivered at intake and not counted here.",
		}, []string{"server"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_recipients_deferred_total",
			Help: "Recipient attempts deferred (a 4xx reply or no answer; retried later), by server ID.",
		}, []string{"server"}),
		bounced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_recipients_bounced_total",
			Help: "Recipients bounced (a 5xx reply, or deferred past max-lifetime: Transient), by server ID and Postmark bounce type.",
		}, []string{"server", "type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "postern_delivery_duration_seconds",
			Help:    "How long a delivery attempt of one message took (signing, and every destination in parallel), by server ID.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"server"}),
		dkim: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_dkim_signatures_total",
			Help: "DKIM signatures made, by algorithm (a message of a domain with both keys gets one of each).",
		}, []string{"algorithm"}),
		tls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_delivery_tls_total",
			Help: "New SMTP sessions to MX hosts, by TLS policy (none: plaintext, opportunistic, mta-sts, dane) and result: success, or failure when the server could not meet the policy (or, in MTA-STS testing mode, did not and was used anyway).",
		}, []string{"policy", "result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.delivered, m.deferred, m.bounced, m.duration, m.dkim, m.tls, &queueCollector{st: st, now: now}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func serverLabel(id int64) string { return strconv.FormatInt(id, 10) }

// bounceLabel keeps the type label within BounceTypes.
func bounceLabel(t string) string {
	for _, b := range BounceTypes {
		if b == t {
			return t
		}
	}
	return BounceUnknown.String()
}

// recorded counts the outcomes of an attempt the store has recorded: an
// attempt whose recording failed comes back and is counted then.
func (m *metrics) recorded(a store.Attempt, took time.Duration) {
	server := serverLabel(a.Entry.ServerID)
	m.duration.WithLabelValues(server).Observe(took.Seconds())
	for _, o := range a.Outcomes {
		switch o.Type {
		case store.EventDelivered:
			m.delivered.WithLabelValues(server).Inc()
		case store.EventTransient:
			m.deferred.WithLabelValues(server).Inc()
		case store.EventBounced:
			m.bounced.WithLabelValues(server, bounceLabel(o.Details.BounceType)).Inc()
		}
	}
}

var (
	queueDepthDesc = prometheus.NewDesc("postern_queue_depth",
		"Messages with recipients still to deliver, being delivered or waiting, by server ID.", []string{"server"}, nil)
	queueOldestDesc = prometheus.NewDesc("postern_queue_oldest_seconds",
		"How long the queue entry due first has been due without being delivered (0 when nothing waits), by server ID.", []string{"server"}, nil)
)

// queueCollector reads the queue from the store at each scrape: the
// store is the truth, and one read transaction that decodes no entry is
// cheap next to a scrape interval.
type queueCollector struct {
	st  Store
	now func() time.Time
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDepthDesc
	ch <- queueOldestDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.st.QueueStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDepthDesc, err)
		return
	}
	now := c.now()
	for _, s := range stats {
		server := serverLabel(s.ServerID)
		ch <- prometheus.MustNewConstMetric(queueDepthDesc, prometheus.GaugeValue, float64(s.Depth), server)
		waited := 0.0
		if !s.Earliest.IsZero() && s.Earliest.Before(now) {
			waited = now.Sub(s.Earliest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, waited, server)
	}
}
