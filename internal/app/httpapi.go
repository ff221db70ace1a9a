package app

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/store"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/relay"
)

// Bounds of the HTTP API's connections. Writes get long enough for
// verifyDkim's DNS lookups.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiReadTimeout       = time.Minute
	apiWriteTimeout      = 2 * time.Minute
	apiIdleTimeout       = 2 * time.Minute
	apiMaxHeaderBytes    = 64 << 10
)

// newAPIServer builds the HTTP server of the API. addr is the address
// the API really listens on, from which its public URL is derived unless
// public-url is set; tlsConfig is used when api-tls is on. Sending over
// the API follows the same rules as SMTP, policy among them.
func (app *App) newAPIServer(tlsConfig *tls.Config, addr string, policy store.SenderPolicy) (*http.Server, error) {
	cfg, log := app.cfg, app.log
	a, err := api.New(api.Config{
		Store:                    app.Store,
		Auth:                     auth.NewAuthenticator(app.Store),
		Resolver:                 relay.NewResolver(cfg.DNS),
		GenerateKeys:             dkim.Generate,
		PublicURL:                cfg.APIURL(addr),
		ConsoleURL:               cfg.ConsoleURL(app.Addr("console")),
		BackupDir:                cfg.DataDir,
		TLSReport:                app.previewTLSReport,
		SenderPolicy:             policy,
		MaxRecipients:            cfg.MaxRecipients,
		MaxMessageBytes:          int(cfg.MaxMessageSize),
		AllowPrivateDestinations: cfg.AllowPrivateDestinations,
		Hostname:                 cfg.Hostname,
		Accepted:                 func(int64, string) { app.worker.Notify() },
		Foreground:               app.cpu.Foreground,
		Unsubscribed:             app.webhooks.Notify,
		Metrics:                  app.metrics.reg,
		CheckWebhookURL:          checkWebhookURL(cfg),
		InboundDomain:            cfg.Inbound(),
		CNAME:                    relay.NewResolver(cfg.DNS).LookupCNAME,
		SendingIPs:               sendingIPs(cfg),
		PTR:                      app.ptr.name,
		Logger:                   log,
	})
	if err != nil {
		return nil, err
	}
	hs := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.APITLS {
		hs.TLSConfig = tlsConfig.Clone()
	}
	return hs, nil
}

// serveAPI serves the API on ln until Shutdown, which is not an error.
func serveAPI(hs *http.Server, ln net.Listener) error {
	var err error
	if hs.TLSConfig != nil {
		err = hs.ServeTLS(ln, "", "")
	} else {
		err = hs.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
