package app

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
)

// newRelay builds the delivery worker from the settings: MX delivery
// through the configured resolver and port, and the smarthost if one is
// set. Its metrics go on reg.
func newRelay(cfg *config.Config, st relay.Store, log *slog.Logger, reg prometheus.Registerer) (*relay.Worker, error) {
	// Sessions stay open 2 seconds after a message for the next one to
	// the same destination, as Postfix's connection cache does.
	client := relay.ClientConfig{Hostname: cfg.Hostname, ReuseTimeout: 2 * time.Second}
	mx, err := relay.NewMXDeliverer(relay.MXConfig{
		ClientConfig: client,
		Resolver:     relay.NewResolver(cfg.DNS),
		Port:         cfg.MXPort,
		TLSFallback:  cfg.TLSFallback,
		AllowPrivate: cfg.AllowPrivateDestinations,
	})
	if err != nil {
		return nil, err
	}
	wc := relay.WorkerConfig{
		Store:            st,
		MX:               mx,
		ReturnPathDomain: cfg.ReturnPathDomain,
		Workers:          cfg.RelayWorkers,
		PerServer:        cfg.RelayPerServer,
		PerDomain:        cfg.RelayPerDomain,
		RetryBase:        cfg.RetryBase,
		RetryMaxInterval: cfg.RetryMaxInterval,
		MaxLifetime:      cfg.MaxLifetime,
		DrainTimeout:     cfg.ShutdownTimeout,
		Logger:           log,
		Metrics:          reg,
	}
	if cfg.Smarthost != "" {
		sh, err := relay.NewSmarthost(relay.SmarthostConfig{
			ClientConfig: client,
			Addr:         cfg.Smarthost,
			ImplicitTLS:  cfg.SmarthostTLS == config.SmarthostImplicitTLS,
			Username:     cfg.SmarthostUser,
			Password:     cfg.SmarthostPassword,
		})
		if err != nil {
			return nil, err
		}
		wc.Smarthost, wc.SmarthostDomains = sh, cfg.SmarthostDomains
	}
	return relay.NewWorker(wc)
}
