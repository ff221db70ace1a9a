// Package app wires a running Postern: the store, the SMTP listeners, the
// relay, the HTTP API, the metrics listener, retention and the daily
// re-verification of domains, and their orderly shutdown. postern serve
// and the full-stack tests both run it.
package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/postern/postern/internal/cpushare"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/inbound"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/postgres"
	"github.com/postern/postern/webhook"
)

// StoreOptions are how a command opens the store.
type StoreOptions struct {
	// OnCommit, if set, is told of each commit (for metrics; the bbolt
	// backend's group commits).
	OnCommit func(writes int, took time.Duration)
	// Hurry, if set, says when the bbolt backend's background writes
	// must not wait to share a commit: while clients are submitting.
	Hurry func() bool
	// Existing refuses to create a store: an operator command needs an
	// initialised one.
	Existing bool
	// LockTimeout bounds the wait for another process holding the bbolt
	// file (a running serve); zero: the backend's default.
	LockTimeout time.Duration
}

// OpenStore opens the storage backend the settings name: the bbolt file
// in the data directory, created if new unless opts.Existing, or the
// PostgreSQL database of the store setting. It is the one place a
// backend is chosen.
func OpenStore(cfg *config.Config, opts StoreOptions) (store.Backend, error) {
	caps := store.Caps{
		DomainsPerAccount: cfg.MaxDomainsPerAccount,
		ServersPerAccount: cfg.MaxServersPerAccount,
		TokensPerServer:   cfg.MaxTokensPerServer,
	}
	if cfg.Store != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := postgres.Open(ctx, cfg.Store, postgres.Options{Caps: caps, NodeName: cfg.NodeName})
		if err != nil {
			return nil, err
		}
		if opts.Existing {
			if ok, err := st.Initialized(); err != nil || !ok {
				st.Close()
				return nil, errors.Join(err, errors.New("the PostgreSQL store is not initialised: run postern init -store … (or postern serve) first"))
			}
		}
		return st, nil
	}
	if opts.Existing && !bolt.Exists(cfg.DataDir) {
		return nil, fmt.Errorf("no store in %s: run postern init (or postern serve) first, or set -data", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	return bolt.Open(bolt.Path(cfg.DataDir), bolt.Options{OnCommit: opts.OnCommit, Hurry: opts.Hurry, LockTimeout: opts.LockTimeout, Caps: caps})
}

// OpenLocation opens the store at loc, for postern store copy: a
// PostgreSQL DSN, or a data directory holding (or, unless existing, to
// hold) a bbolt store.
func OpenLocation(loc string, existing bool) (store.Backend, error) {
	if strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://") {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return postgres.Open(ctx, loc, postgres.Options{})
	}
	if existing && !bolt.Exists(loc) {
		return nil, fmt.Errorf("no store in %s", loc)
	}
	if !existing && bolt.Exists(loc) {
		return nil, fmt.Errorf("%s holds a store already: copy into an empty data directory", loc)
	}
	if err := os.MkdirAll(loc, 0o700); err != nil {
		return nil, err
	}
	return bolt.Open(bolt.Path(loc), bolt.Options{LockTimeout: time.Second})
}

// CheckBackup opens a copy GET /backup made and runs its consistency
// check (bbolt's page checks and Postern's own). Opening may add a
// missing top-level bucket, as it does to any store; it changes nothing
// else.
func CheckBackup(path string) error {
	st, err := bolt.Open(path, bolt.Options{LockTimeout: time.Second})
	if err != nil {
		return err
	}
	return errors.Join(st.Check(), st.Close())
}

// App is a Postern built and listening, not yet serving.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	version string
	metrics *serveMetrics

	// Store is the open backend; Run closes it.
	Store  store.Backend
	worker *relay.Worker
	mx     *relay.MXDeliverer // the worker's; TLS reports go out through it
	// webhooks calls servers' webhooks from the store's outbox.
	webhooks *webhook.Dispatcher
	smtp     *smtpd.Server
	inbound  *inbound.Server // mail to Postern itself: DMARC reports
	ptr      *ptrCache       // the names of DMARC sources, for the API and the digests

	listeners     []listener
	apiServer     *http.Server    // nil when the API is off
	consoleServer *http.Server    // nil when the console is off
	metricsServer *http.Server    // nil when metrics are off
	pprofServer   *http.Server    // nil when pprof-addr is off
	cpu           *cpushare.Share // the intake before the relay's signing

	// Installation is set when New initialised a new store: the tokens,
	// shown this once.
	Installation *auth.Installation
}

// listener is one bound address and how it is served.
type listener struct {
	name  string // smtp, smtps, api, metrics
	ln    net.Listener
	serve func(net.Listener) error
}

// New builds Postern from cfg and listens on every address before
// serving any, so a port in use is reported before mail is accepted. A
// new store is initialised (see Installation). version is logged.
func New(cfg *config.Config, log *slog.Logger, version string) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, version: version}
	// The data directory holds the self-signed certificate whichever
	// backend holds the rest.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	tuneGC(cfg.MaxInflightBytes, os.Getenv, log)
	if a.metrics, err = newServeMetrics(); err != nil {
		return nil, err
	}
	a.cpu = cpushare.New(0, 0)
	if a.Store, err = OpenStore(cfg, StoreOptions{OnCommit: a.metrics.onCommit, Hurry: a.cpu.Busy}); err != nil {
		return nil, err
	}
	if err := a.metrics.registerPoolMetrics(a.Store); err != nil {
		a.Store.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			a.closeListeners()
			a.Store.Close()
		}
	}()
	tlsConfig, err := cfg.TLSConfig()
	if err != nil {
		return nil, err
	}
	policy, err := store.ParseSenderPolicy(cfg.SenderPolicy)
	if err != nil {
		return nil, err
	}
	if a.worker, a.mx, err = newRelay(cfg, a.Store, a.cpu, log, a.metrics.reg); err != nil {
		return nil, err
	}
	if a.webhooks, err = newDispatcher(cfg, a.Store, log, a.metrics.reg); err != nil {
		return nil, err
	}
	// The API listens first: its address makes the unsubscribe links the
	// intake puts on Broadcasts messages.
	if err := a.listen("api", cfg.APIAddr, func(ln net.Listener) error { return serveAPI(a.apiServer, ln) }); err != nil {
		return nil, err
	}
	if err := a.listen("console", cfg.ConsoleAddr, func(ln net.Listener) error { return serveAPI(a.consoleServer, ln) }); err != nil {
		return nil, err
	}
	unsubscribeBase := ""
	if addr := a.Addr("api"); addr != "" {
		unsubscribeBase = cfg.APIURL(addr)
	}
	a.ptr = newPTRCache(relay.NewResolver(cfg.DNS))
	if a.inbound, err = inbound.New(inbound.Config{
		Domain:         cfg.Inbound(),
		Hostname:       cfg.Hostname,
		Store:          a.Store,
		TLSConfig:      tlsConfig,
		CommandTimeout: cfg.CommandTimeout,
		SessionTimeout: cfg.SessionTimeout,
		Filed:          a.ptr.nameSources,
		Logger:         log,
		Metrics:        a.metrics.reg,
	}); err != nil {
		return nil, err
	}
	a.smtp, err = smtpd.New(smtpd.Config{
		UnsubscribeBase:          unsubscribeBase,
		Hostname:                 cfg.Hostname,
		Store:                    a.Store,
		Credentials:              auth.NewAuthenticator(a.Store),
		Throttle:                 newThrottle(cfg, a.Store),
		Foreground:               a.cpu.Foreground,
		TLSConfig:                tlsConfig,
		MaxMessageBytes:          cfg.MaxMessageSize,
		MaxRecipients:            cfg.MaxRecipients,
		MaxLineLength:            cfg.MaxLineLength,
		CommandTimeout:           cfg.CommandTimeout,
		WriteTimeout:             cfg.WriteTimeout,
		SessionTimeout:           cfg.SessionTimeout,
		MaxSessions:              cfg.MaxSessions,
		MaxSessionsPerAddress:    cfg.MaxSessionsPerIP,
		PreauthTimeout:           cfg.PreauthTimeout,
		MaxInflightBytes:         cfg.MaxInflightBytes,
		AllowPlaintextAuth:       cfg.AllowPlaintextAuth,
		AllowPrivateDestinations: cfg.AllowPrivateDestinations,
		SenderPolicy:             policy,
		Accepted:                 func(int64, string) { a.worker.Notify() },
		Logger:                   log,
		Metrics:                  a.metrics.reg,
	})
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		name, addr string
		serve      func(net.Listener) error
	}{{"smtp", cfg.SMTPAddr, a.smtp.Serve}, {"smtps", cfg.SMTPSAddr, a.smtp.ServeTLS}, {"inbound", cfg.InboundAddr, a.inbound.Serve}} {
		if err := a.listen(l.name, l.addr, l.serve); err != nil {
			return nil, err
		}
	}
	if addr := a.Addr("api"); addr != "" {
		if a.apiServer, err = a.newAPIServer(tlsConfig, addr, policy); err != nil {
			return nil, fmt.Errorf("api-addr: %w", err)
		}
	}
	if a.Addr("console") != "" {
		if a.consoleServer, err = a.newConsoleServer(tlsConfig); err != nil {
			return nil, fmt.Errorf("console-addr: %w", err)
		}
	}
	if err := a.listen("metrics", cfg.MetricsAddr, func(ln net.Listener) error { return serveHTTP(a.metricsServer, ln) }); err != nil {
		return nil, err
	}
	if a.Addr("metrics") != "" {
		if a.metricsServer, err = newMetricsServer(a.metrics, a.Store, a.worker, log); err != nil {
			return nil, fmt.Errorf("metrics-addr: %w", err)
		}
	}
	if err := a.listen("pprof", cfg.PprofAddr, func(ln net.Listener) error { return serveHTTP(a.pprofServer, ln) }); err != nil {
		return nil, err
	}
	if a.Addr("pprof") != "" {
		a.pprofServer = newPprofServer(log)
	}
	ok, err := a.Store.Initialized()
	if err != nil || ok {
		return a, err
	}
	inst, err := auth.Init(a.Store, time.Now())
	if err != nil {
		return nil, err
	}
	a.Installation = &inst
	return a, nil
}

// newThrottle is the login throttle: shared by the nodes of a store that
// can count failures for all of them, this node's own otherwise.
func newThrottle(cfg *config.Config, st store.Backend) smtpd.Throttle {
	return newSignInThrottle(auth.ThrottleConfig{Failures: cfg.AuthMaxFailures, Window: cfg.AuthFailureWindow}, st)
}

// newSignInThrottle counts failures as tc says, across the nodes of a
// store that can count them for all, on this node otherwise.
func newSignInThrottle(tc auth.ThrottleConfig, st store.Backend) interface {
	Blocked(key string) (bool, time.Time)
	Fail(key string) bool
} {
	if shared, ok := st.(store.LoginFailures); ok {
		return auth.NewSharedThrottle(tc, shared)
	}
	return auth.NewThrottle(tc)
}

// listen binds addr for the listener name, unless the setting is off.
func (a *App) listen(name, addr string, serve func(net.Listener) error) error {
	if config.Off(addr) {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s-addr: %w", name, err)
	}
	a.listeners = append(a.listeners, listener{name, ln, serve})
	return nil
}

func (a *App) closeListeners() {
	for _, l := range a.listeners {
		l.ln.Close()
	}
}

// Addr returns the address the listener name (smtp, smtps, api,
// metrics) is bound to, or "" when it is off.
func (a *App) Addr(name string) string {
	for _, l := range a.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Run serves until ctx is done or a listener or the relay fails, then
// shuts down in order: the listeners stop taking mail, the relay gets
// shutdown-timeout to finish its deliveries, the metrics listener goes
// last so the drain can be watched, and the store is closed.
func (a *App) Run(ctx context.Context) error {
	log, cfg := a.log, a.cfg
	failed := make(chan error, len(a.listeners)+1)
	// The relay runs until the listeners have stopped taking mail.
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		a.worker.Run(relayCtx)
	}()
	// Retention purges in the background, in small transactions; the
	// daily re-verification of domains runs beside it.
	backgroundCtx, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	retentionDone, reverifyDone, watchDone, reportsDone, webhooksDone := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		// A shared store tells this node's relay of mail other nodes
		// queue, so that it starts at once rather than at its next poll.
		defer close(watchDone)
		if w, ok := a.Store.(store.QueueWatcher); ok {
			w.WatchQueue(backgroundCtx, a.worker.Notify)
		}
	}()
	go func() {
		defer close(retentionDone)
		runRetention(backgroundCtx, a.Store, cfg.RetentionInterval, time.Now, log)
	}()
	go func() {
		defer close(reverifyDone)
		runReverify(backgroundCtx, a.Store, relay.NewResolver(cfg.DNS), time.Duration(cfg.DomainReverifyDays)*24*time.Hour, time.Now, log)
	}()
	dmarcDone := make(chan struct{})
	go func() {
		defer close(dmarcDone)
		runDMARCMail(backgroundCtx, a.Store, a.dmarcMailer(), log)
	}()
	go func() {
		defer close(webhooksDone)
		a.webhooks.Run(backgroundCtx)
	}()
	go func() {
		defer close(reportsDone)
		runTLSReports(backgroundCtx, a.Store, a.tlsReports(), log)
	}()
	for _, l := range a.listeners {
		log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		go func() {
			if err := l.serve(l.ln); err != nil {
				failed <- fmt.Errorf("%s listener: %w", l.name, err)
			}
		}()
	}
	a.metrics.listenersUp.Store(true)
	log.Info("postern started", "version", a.version, "data", cfg.DataDir, "hostname", cfg.Hostname)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case runErr = <-failed:
		log.Error("listener or relay failed; shutting down", "err", runErr)
	}
	a.metrics.listenersUp.Store(false) // not ready: a load balancer stops sending
	stopBackground()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := a.smtp.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if err := a.inbound.Shutdown(shutdownCtx); err != nil {
		log.Warn("inbound shutdown", "err", err)
	}
	if a.apiServer != nil {
		if err := a.apiServer.Shutdown(shutdownCtx); err != nil {
			log.Warn("api shutdown", "err", err)
		}
	}
	if a.consoleServer != nil {
		if err := a.consoleServer.Shutdown(shutdownCtx); err != nil {
			log.Warn("console shutdown", "err", err)
		}
	}
	// Then the relay: deliveries in flight get shutdown-timeout to end;
	// what they leave unfinished is taken up at the next start.
	stopRelay()
	<-relayDone
	for name, hs := range map[string]*http.Server{"metrics": a.metricsServer, "pprof": a.pprofServer} {
		if hs == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := hs.Shutdown(ctx); err != nil {
			log.Warn(name+" shutdown", "err", err)
		}
		cancel()
	}
	<-retentionDone
	<-reverifyDone
	<-reportsDone
	<-webhooksDone
	<-dmarcDone
	<-watchDone
	if err := a.Store.Close(); err != nil {
		return errors.Join(runErr, fmt.Errorf("closing the store: %w", err))
	}
	log.Info("postern stopped")
	return runErr
}
