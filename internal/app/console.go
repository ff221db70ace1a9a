package app

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/console"
	"github.com/postern/postern/relay"
)

// consoleFailures and consoleWindow: after 5 failed sign-ins for one
// email or from one address within 5 minutes, further tries wait.
const (
	consoleFailures = 5
	consoleWindow   = 5 * time.Minute
)

// newConsoleServer builds the HTTP server of the web console, with the
// API's bounds; tlsConfig is used when console-tls is on.
func (app *App) newConsoleServer(tlsConfig *tls.Config) (*http.Server, error) {
	cfg := app.cfg
	tc := auth.ThrottleConfig{Failures: consoleFailures, Window: consoleWindow}
	c, err := console.New(console.Config{
		Store:    app.Store,
		Throttle: newSignInThrottle(tc, app.Store),
		Resolver: relay.NewResolver(cfg.DNS),
		SMTPAddr: app.swaksAddr(),
		Secure:   cfg.ConsoleTLS,
		Logger:   app.log,
	})
	if err != nil {
		return nil, err
	}
	hs := &http.Server{
		Handler:           c,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		WriteTimeout:      apiWriteTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(app.log.Handler(), slog.LevelWarn),
	}
	if cfg.ConsoleTLS {
		hs.TLSConfig = tlsConfig.Clone()
	}
	return hs, nil
}

// swaksAddr is the SMTP submission address the console shows in the
// swaks line of a new token.
func (app *App) swaksAddr() string {
	if a := app.Addr("smtp"); a != "" {
		return a
	}
	return app.Addr("smtps")
}
