package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/postern/postern/api"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// serveMetrics is what serve needs for its metrics: the registry that
// smtpd and relay register on, and the store's commit histograms.
//
// The store's metrics are defined here rather than in store: the bolt
// backend offers Options.OnCommit for them, so it stays free of any
// metrics library; the app owns the registry, so it turns the callback
// into histograms.
type serveMetrics struct {
	reg         *prometheus.Registry
	commit      prometheus.Histogram
	batch       prometheus.Histogram
	listenersUp atomic.Bool // the listeners are serving (readyz)
}

func newServeMetrics() (*serveMetrics, error) {
	m := &serveMetrics{
		reg: prometheus.NewRegistry(),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postern_store_commit_seconds",
			Help:    "How long a store commit (one group of writes, synced to disk) took.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postern_store_commit_batch_size",
			Help:    "How many writes (messages accepted, attempts recorded...) shared one store commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
	}
	for _, c := range []prometheus.Collector{
		// With the scheduler's latencies (go_sched_latencies_seconds): how
		// long runnable goroutines waited for a CPU, which is where intake
		// loses time when the relay's signing takes both cores.
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commit, m.batch,
	} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// onCommit is the store's Options.OnCommit.
func (m *serveMetrics) onCommit(writes int, took time.Duration) {
	m.batch.Observe(float64(writes))
	m.commit.Observe(took.Seconds())
}

// storeCheckName names the store in /readyz: with the database it is,
// when the backend can say.
func storeCheckName(st store.Maintenance) string {
	if l, ok := st.(store.Located); ok {
		return "store (" + l.Location() + ")"
	}
	return "store"
}

// pooled is a backend with a pool of connections to count.
type pooled interface {
	PoolConnections() map[string]int
}

// registerPoolMetrics adds postern_store_pool_connections{state} when the
// backend keeps a pool of connections.
func (m *serveMetrics) registerPoolMetrics(st store.Maintenance) error {
	p, ok := st.(pooled)
	if !ok {
		return nil
	}
	for _, state := range []string{"acquired", "idle", "constructing"} {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "postern_store_pool_connections",
			Help:        "Connections of the store's pool to its database, by state: acquired (in use), idle, constructing (being opened).",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 { return float64(p.PoolConnections()[state]) })
		if err := m.reg.Register(g); err != nil {
			return err
		}
	}
	return nil
}

// Bounds of the metrics listener's connections: scrapes and probes are
// small and quick.
const (
	metricsReadHeaderTimeout = 5 * time.Second
	metricsWriteTimeout      = 30 * time.Second
	metricsIdleTimeout       = 2 * time.Minute
)

// newMetricsServer builds the metrics listener's HTTP server: /metrics,
// /healthz, and /readyz, ready when the store takes a commit, the
// listeners serve and the relay runs.
func newMetricsServer(m *serveMetrics, st store.Maintenance, worker *relay.Worker, log *slog.Logger) (*http.Server, error) {
	h, err := api.NewOps(api.OpsConfig{
		Gatherer: m.reg,
		Ready: []api.Check{
			{Name: storeCheckName(st), Run: func(context.Context) error { return st.Ping() }},
			{Name: "listeners", Run: func(context.Context) error {
				if !m.listenersUp.Load() {
					return errors.New("not serving")
				}
				return nil
			}},
			{Name: "relay", Run: func(context.Context) error {
				if !worker.Running() {
					return errors.New("not running")
				}
				return nil
			}},
		},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: metricsReadHeaderTimeout,
		WriteTimeout:      metricsWriteTimeout,
		IdleTimeout:       metricsIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}, nil
}

// serveHTTP serves hs on ln until Shutdown, which is not an error.
func serveHTTP(hs *http.Server, ln net.Listener) error {
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
