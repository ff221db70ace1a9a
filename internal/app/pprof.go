package app

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// newPprofServer serves Go's profiler on pprof-addr. It is a listener of
// its own, not a path of the metrics listener: a CPU profile or an
// execution trace streams for as long as it was asked to run, longer than
// the metrics listener's write timeout allows, and the profiler shows the
// process's memory, which a Prometheus scraper has no business reading.
func newPprofServer(log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: metricsReadHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
