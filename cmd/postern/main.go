// Command postern is Postern's one binary: the SMTP relay (serve) and the
// operator's tools. It only parses flags and wires the packages together.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `Usage: postern <command> [flags]

Commands:
  serve     run the SMTP relay (creates and initialises ./postern-data if new)
  init      create a data directory: an account, its owner token, and a Sandbox server "Default" with its token
  domain    sending domains and their DKIM keys: add, list, verify (run while serve is stopped)
  server    servers over the HTTP API: list, create, show, edit, delete, and their tokens
  messages  a server's recent outbound messages, over the HTTP API
  backup    a consistent copy of the store of a running serve, over the HTTP API (operator's owner token)
  bench     drive SMTP load at an address and report throughput and latency
  sink      an SMTP server that accepts and discards everything, counting it
  settings  list every setting with its environment variable and default (-markdown: docs/settings.md)
  version   print the version

Run "postern <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = serve(rest, stdout, stderr)
	case "init":
		err = initCmd(rest, stdout, stderr)
	case "domain":
		err = domainCmd(rest, stdout, stderr)
	case "server":
		err = serverCmd(rest, stdout, stderr)
	case "messages":
		err = messagesCmd(rest, stdout, stderr)
	case "backup":
		err = backupCmd(rest, stdout, stderr)
	case "bench":
		err = benchCmd(rest, stdout, stderr)
	case "sink":
		err = sinkCmd(rest, stdout, stderr)
	case "settings":
		err = settingsCmd(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "postern", versionString())
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "postern: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "postern:", err)
		return 1
	}
	return 0
}

func versionString() string {
	if version != "dev" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return version
}

// loadConfig parses a subcommand's flags (extra declares its own) and
// loads the settings.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, error) {
	var cfg config.Config
	fs := config.FlagSet(name, &cfg)
	fs.SetOutput(stderr)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	if err := config.Load(fs, &cfg, os.LookupEnv); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func initCmd(args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	cfg, err := loadConfig("init", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	})
	if err != nil {
		return err
	}
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	inst, err := auth.Init(st, time.Now())
	if errors.Is(err, store.ErrInitialized) {
		return fmt.Errorf("%s is already initialised; nothing was changed", cfg.DataDir)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			AccountID    int64
			AccountToken string
			ServerID     int64
			ServerName   string
			ServerToken  string
		}{inst.AccountID, inst.AccountToken, inst.ServerID, inst.ServerName, inst.ServerToken})
	}
	var target swaksTarget
	for _, l := range []struct{ name, addr string }{{"smtp", cfg.SMTPAddr}, {"smtps", cfg.SMTPSAddr}} {
		if !config.Off(l.addr) {
			target = target.or(l.name, l.addr)
		}
	}
	printInstallation(stdout, cfg.DataDir, inst, target)
	return nil
}

// openStore opens the store in the data directory, creating both if new.
func openStore(cfg *config.Config) (*bolt.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	return bolt.Open(bolt.Path(cfg.DataDir), bolt.Options{Caps: store.Caps{
		DomainsPerAccount: cfg.MaxDomainsPerAccount,
		ServersPerAccount: cfg.MaxServersPerAccount,
		TokensPerServer:   cfg.MaxTokensPerServer,
	}})
}

// swaksTarget is where the printed swaks command should connect.
type swaksTarget struct {
	addr string
	flag string // --tls (STARTTLS) or --tlsc (implicit TLS)
}

// or prefers the STARTTLS listener; an unspecified host becomes 127.0.0.1.
func (t swaksTarget) or(listener, addr string) swaksTarget {
	if t.flag == "--tls" {
		return t
	}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	if listener == "smtps" {
		return swaksTarget{addr, "--tlsc"}
	}
	return swaksTarget{addr, "--tls"}
}

// printInstallation shows new tokens, the one time they can be shown.
func printInstallation(w io.Writer, dataDir string, inst auth.Installation, target swaksTarget) {
	fmt.Fprintf(w, `Postern initialised in %s

  Account %d, owner token:     %s
  Server %q (ID %d, Sandbox), server token: %s

These tokens are shown only now; Postern keeps only their hashes.
The server token is the SMTP username and password. Try it:

  swaks --server %s %s --auth PLAIN \
    --auth-user %s --auth-password %s \
    --from app@example.com --to someone@example.net

`, dataDir, inst.AccountID, inst.AccountToken, inst.ServerName, inst.ServerID, inst.ServerToken,
		target.addr, target.flag, inst.ServerToken, inst.ServerToken)
}

func settingsCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("settings", flag.ContinueOnError)
	fs.SetOutput(stderr)
	markdown := fs.Bool("markdown", false, "print the reference page docs/settings.md")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("settings: unexpected argument %q", fs.Arg(0))
	}
	if *markdown {
		_, err := io.WriteString(stdout, config.SettingsMarkdown())
		return err
	}
	for _, s := range config.Settings() {
		fmt.Fprintf(stdout, "-%s (%s, default %q)\n    %s\n", s.Name, s.Env, s.Default, s.Usage)
	}
	return nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func serve(args []string, stdout, stderr io.Writer) error {
	// Handle signals from the start: a SIGTERM that arrives while Postern
	// starts must shut it down cleanly, not kill it.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, err := loadConfig("serve", args, stderr, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	tuneGC(cfg.MaxInflightBytes, os.Getenv, log)
	metrics, err := newServeMetrics()
	if err != nil {
		return err
	}
	st, err := openStoreWith(cfg, bolt.Options{OnCommit: metrics.onCommit})
	if err != nil {
		return err
	}
	defer st.Close()
	tlsConfig, err := cfg.TLSConfig()
	if err != nil {
		return err
	}
	policy, err := smtpd.ParseSenderPolicy(cfg.SenderPolicy)
	if err != nil {
		return err
	}
	worker, err := newRelay(cfg, st, log, metrics.reg)
	if err != nil {
		return err
	}
	srv, err := smtpd.New(smtpd.Config{
		Hostname:                 cfg.Hostname,
		Store:                    st,
		Credentials:              auth.NewAuthenticator(st),
		Throttle:                 auth.NewThrottle(auth.ThrottleConfig{Failures: cfg.AuthMaxFailures, Window: cfg.AuthFailureWindow}),
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
		Accepted:                 func(int64, string) { worker.Notify() },
		Logger:                   log,
		Metrics:                  metrics.reg,
	})
	if err != nil {
		return err
	}

	// Listen on every address before serving any, so a port in use is
	// reported before mail is accepted, and the tokens of a new store can
	// be printed with the addresses really listened on.
	type listener struct {
		name  string
		ln    net.Listener
		serve func(net.Listener) error
	}
	var listeners []listener
	for _, l := range []struct {
		name, addr string
		serve      func(net.Listener) error
	}{{"smtp", cfg.SMTPAddr, srv.Serve}, {"smtps", cfg.SMTPSAddr, srv.ServeTLS}} {
		if config.Off(l.addr) {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, opened := range listeners {
				opened.ln.Close()
			}
			return fmt.Errorf("%s-addr: %w", l.name, err)
		}
		listeners = append(listeners, listener{l.name, ln, l.serve})
	}
	var apiServer *http.Server
	if !config.Off(cfg.APIAddr) {
		ln, err := net.Listen("tcp", cfg.APIAddr)
		if err == nil {
			apiServer, err = newAPIServer(cfg, st, tlsConfig, ln.Addr().String(), log)
			if err != nil {
				ln.Close()
			}
		}
		if err != nil {
			for _, opened := range listeners {
				opened.ln.Close()
			}
			return fmt.Errorf("api-addr: %w", err)
		}
		listeners = append(listeners, listener{"api", ln, func(ln net.Listener) error { return serveAPI(apiServer, ln) }})
	}
	var metricsServer *http.Server
	if !config.Off(cfg.MetricsAddr) {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err == nil {
			metricsServer, err = newMetricsServer(metrics, st, worker, log)
			if err != nil {
				ln.Close()
			}
		}
		if err != nil {
			for _, opened := range listeners {
				opened.ln.Close()
			}
			return fmt.Errorf("metrics-addr: %w", err)
		}
		listeners = append(listeners, listener{"metrics", ln, func(ln net.Listener) error { return serveHTTP(metricsServer, ln) }})
	}
	if ok, err := st.Initialized(); err != nil {
		return err
	} else if !ok {
		inst, err := auth.Init(st, time.Now())
		if err != nil {
			return err
		}
		submission := swaksTarget{}
		for _, l := range listeners {
			if l.name == "smtp" || l.name == "smtps" {
				submission = submission.or(l.name, l.ln.Addr().String())
			}
		}
		printInstallation(stdout, cfg.DataDir, inst, submission)
	}

	failed := make(chan error, len(listeners)+1)
	// The relay runs until the listeners have stopped taking mail.
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		if err := worker.Run(relayCtx); err != nil {
			failed <- err
		}
	}()
	// Retention purges in the background, in small transactions; the
	// daily re-verification of domains runs beside it.
	retentionCtx, stopRetention := context.WithCancel(context.Background())
	defer stopRetention()
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		runRetention(retentionCtx, st, cfg.RetentionInterval, time.Now, log)
	}()
	reverifyDone := make(chan struct{})
	go func() {
		defer close(reverifyDone)
		runReverify(retentionCtx, st, relay.NewResolver(cfg.DNS), time.Duration(cfg.DomainReverifyDays)*24*time.Hour, time.Now, log)
	}()
	for _, l := range listeners {
		log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		go func() {
			if err := l.serve(l.ln); err != nil {
				failed <- fmt.Errorf("%s listener: %w", l.name, err)
			}
		}()
	}
	metrics.listenersUp.Store(true)
	log.Info("postern started", "version", versionString(), "data", cfg.DataDir, "hostname", cfg.Hostname)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case runErr = <-failed:
		log.Error("listener or relay failed; shutting down", "err", runErr)
	}
	metrics.listenersUp.Store(false) // not ready: a load balancer stops sending
	stopRetention()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if apiServer != nil {
		if err := apiServer.Shutdown(shutdownCtx); err != nil {
			log.Warn("api shutdown", "err", err)
		}
	}
	// Then the relay: deliveries in flight get shutdown-timeout to end;
	// what they leave unfinished is taken up at the next start.
	stopRelay()
	<-relayDone
	// The metrics listener goes last, so the drain can be watched.
	if metricsServer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := metricsServer.Shutdown(ctx); err != nil {
			log.Warn("metrics shutdown", "err", err)
		}
	}
	<-retentionDone
	<-reverifyDone
	if err := st.Close(); err != nil {
		return errors.Join(runErr, fmt.Errorf("closing the store: %w", err))
	}
	log.Info("postern stopped")
	return runErr
}
