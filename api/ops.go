package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition: Run returns nil when it holds.
type Check struct {
	Name string // "store", "listeners", "relay"...
	Run  func(ctx context.Context) error
}

// OpsConfig configures the operations endpoints of the metrics listener.
type OpsConfig struct {
	// Gatherer is the registry served at /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ready are the conditions of GET /readyz, run in order.
	Ready []Check
	// CheckTimeout bounds each check (a store that hangs on fsync is
	// not ready either); default 2s.
	CheckTimeout time.Duration
	Logger       *slog.Logger // nil: discard
}

// NewOps returns the handler of the metrics listener, which carries no
// tenant data and takes no token (keep it on a private address):
//
//	GET /metrics  Prometheus text exposition of the registry
//	GET /healthz  200 while the process serves HTTP at all (liveness)
//	GET /readyz   200 when every check holds; 503 naming those that fail
//
// Both health endpoints answer JSON: {"status":"ok"|"unavailable",
// "checks":{"store":"ok","relay":"not running",...}}.
func NewOps(cfg OpsConfig) (http.Handler, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("api: OpsConfig.Gatherer is required")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		// A collector that fails (the store, say) leaves the others
		// served; the failure is logged.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, "ok", nil)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := make(map[string]string, len(cfg.Ready))
		ready := true
		for _, c := range cfg.Ready {
			if err := runCheck(r.Context(), c, cfg.CheckTimeout); err != nil {
				ready = false
				checks[c.Name] = err.Error()
				cfg.Logger.Warn("not ready", "check", c.Name, "err", err)
				continue
			}
			checks[c.Name] = "ok"
		}
		if !ready {
			writeHealth(w, http.StatusServiceUnavailable, "unavailable", checks)
			return
		}
		writeHealth(w, http.StatusOK, "ok", checks)
	})
	return mux, nil
}

// runCheck runs c within timeout. A check that does not return in time
// fails; it finishes in the background.
func runCheck(ctx context.Context, c Check, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errors.New("no answer within " + timeout.String())
	}
}

func writeHealth(w http.ResponseWriter, status int, word string, checks map[string]string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks,omitempty"`
	}{word, checks})
}
