package app

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/dane"
	"github.com/postern/postern/internal/mtasts"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/relay"
)

// relayStore is what delivery needs of the store.
type relayStore interface {
	relay.Store
	relay.STSCache
	InstallationKey() ([]byte, error)
}

// newRelay builds the delivery worker from the settings: MX delivery
// through the configured resolver and port, under MTA-STS and DANE, and
// the smarthost if one is set. Its metrics go on reg. The MX deliverer
// is returned too: the TLS reports go out through it.
func newRelay(cfg *config.Config, st relayStore, cpu relay.CPUShare, log *slog.Logger, reg prometheus.Registerer) (*relay.Worker, *relay.MXDeliverer, error) {
	resolver := relay.NewResolver(cfg.DNS)
	fetches := &privateaddr.Dialer{Resolve: resolver.LookupIP, AllowPrivate: cfg.AllowPrivateDestinations}
	sts := relay.NewSTSPolicies(st, resolver,
		&mtasts.Fetcher{Client: mtasts.NewClient(fetches.DialContext), Port: cfg.MTASTSPort}, nil, log)
	// Sessions stay open 2 seconds after a message for the next one to
	// the same destination, as Postfix's connection cache does.
	client := relay.ClientConfig{Hostname: cfg.Hostname, ReuseTimeout: 2 * time.Second}
	mxc := relay.MXConfig{
		ClientConfig: client,
		Resolver:     resolver,
		Port:         cfg.MXPort,
		TLSFallback:  cfg.TLSFallback,
		AllowPrivate: cfg.AllowPrivateDestinations,
		STS:          sts,
	}
	if tlsa := daneResolver(cfg, log); tlsa != nil {
		mxc.DANE = tlsa
	}
	mx, err := relay.NewMXDeliverer(mxc)
	if err != nil {
		return nil, nil, err
	}
	// Return paths name their message when bounces can come back: to
	// return-path-domain, or else to the inbound listener's domain.
	returnPath := cfg.ReturnPathDomain
	if returnPath == "" && !config.Off(cfg.InboundAddr) {
		returnPath = cfg.Inbound()
	}
	var returnPathKey []byte
	if returnPath != "" {
		if returnPathKey, err = st.InstallationKey(); err != nil {
			return nil, nil, err
		}
	}
	wc := relay.WorkerConfig{
		Store:            st,
		MX:               mx,
		ReturnPathDomain: returnPath,
		ReturnPathKey:    returnPathKey,
		Workers:          cfg.RelayWorkers,
		PerServer:        cfg.RelayPerServer,
		PerDomain:        cfg.RelayPerDomain,
		RetryBase:        cfg.RetryBase,
		RetryMaxInterval: cfg.RetryMaxInterval,
		MaxLifetime:      cfg.MaxLifetime,
		DrainTimeout:     cfg.ShutdownTimeout,
		Logger:           log,
		Metrics:          reg,
		CPU:              cpu,
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
			return nil, nil, err
		}
		wc.Smarthost, wc.SmarthostDomains = sh, cfg.SmarthostDomains
	}
	w, err := relay.NewWorker(wc)
	return w, mx, err
}

// daneResolver is the TLSA lookup of delivery, or nil when DANE is off or
// cannot be trusted here; the log says why once, at the start.
func daneResolver(cfg *config.Config, log *slog.Logger) *dane.Resolver {
	if cfg.DANE == config.DANEOff {
		return nil
	}
	r, err := dane.NewResolver(cfg.DNS)
	if err != nil {
		msg := "DANE is skipped: its TLSA records need a validating DNS resolver on a loopback address (set dns to one, such as unbound on 127.0.0.1, or dane to off)"
		if errors.Is(err, dane.ErrUntrusted) {
			log.Warn(msg, "dns", describeResolver(cfg.DNS))
		} else {
			log.Warn(msg, "err", err)
		}
		return nil
	}
	return r
}

func describeResolver(addr string) string {
	if addr == "" {
		return "the system's resolver"
	}
	return addr
}
