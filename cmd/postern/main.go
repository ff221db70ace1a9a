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
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/app"
	"github.com/postern/postern/store"
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
  store     copy a whole store between bbolt and PostgreSQL (store copy -from … -to …)
  bench     drive SMTP load at an address and report throughput and latency (bench fill: fill a store for scale tests)
  sink      an SMTP server that accepts and discards everything, counting it
  user      the account's people for the console: list, add, edit, remove, over the HTTP API
  dmarc     who sends as a domain, from its DMARC reports (dmarc sources|digest -domain D), over the HTTP API
  tlsrpt    preview the SMTP TLS report sent to a recipient domain (tlsrpt preview -domain D), over the HTTP API (operator's owner token)
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
	case "store":
		err = storeCmd(rest, stdout, stderr)
	case "bench":
		err = benchCmd(rest, stdout, stderr)
	case "sink":
		err = sinkCmd(rest, stdout, stderr)
	case "tlsrpt":
		err = tlsrptCmd(rest, stdout, stderr)
	case "dmarc":
		err = dmarcCmd(rest, stdout, stderr)
	case "user":
		err = userCmd(rest, stdout, stderr)
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
	st, err := app.OpenStore(cfg, app.StoreOptions{})
	if err != nil {
		return err
	}
	defer st.Close()
	inst, err := auth.Init(st, time.Now())
	if errors.Is(err, store.ErrInitialized) {
		where := cfg.DataDir
		if cfg.Store != "" {
			where = "the PostgreSQL store"
		}
		return fmt.Errorf("%s is already initialised; nothing was changed", where)
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
			OwnerEmail   string
			SignInURL    string `json:",omitempty"`
		}{inst.AccountID, inst.AccountToken, inst.ServerID, inst.ServerName, inst.ServerToken, inst.OwnerEmail, consoleLink(cfg, "", inst)})
	}
	var target swaksTarget
	for _, l := range []struct{ name, addr string }{{"smtp", cfg.SMTPAddr}, {"smtps", cfg.SMTPSAddr}} {
		if !config.Off(l.addr) {
			target = target.or(l.name, l.addr)
		}
	}
	printInstallation(stdout, cfg.DataDir, inst, target, consoleLink(cfg, "", inst))
	return nil
}

// swaksTarget is where the printed swaks command should connect.
type swaksTarget struct {
	addr string
	flag string // --tls (STARTTLS) or --tlsc (implicit TLS)
}

// or prefers the STARTTLS listener; an unspecified host becomes 127.0.0.1,
// and a listener that is off (addr "") changes nothing.
func (t swaksTarget) or(listener, addr string) swaksTarget {
	if t.flag == "--tls" || addr == "" {
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
func printInstallation(w io.Writer, dataDir string, inst auth.Installation, target swaksTarget, console string) {
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
	if console != "" {
		fmt.Fprintf(w, `The console is at %s. Sign in as %s: set its password with
this one-time link, valid 24 hours:

  %s

`, strings.SplitN(console, auth.SignInPath, 2)[0], inst.OwnerEmail, console)
	}
}

// consoleLink is the owner's one-time sign-in link on the console at
// addr (console-addr when empty), or "" when the console is off.
func consoleLink(cfg *config.Config, addr string, inst auth.Installation) string {
	if config.Off(cfg.ConsoleAddr) || inst.SignInToken == "" {
		return ""
	}
	return cfg.ConsoleURL(addr) + auth.SignInPath + "?token=" + inst.SignInToken
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
	a, err := app.New(cfg, newLogger(cfg, stderr), versionString())
	if err != nil {
		return err
	}
	if a.Installation != nil {
		// The tokens of a new store, with the addresses really listened on.
		target := swaksTarget{}.or("smtp", a.Addr("smtp")).or("smtps", a.Addr("smtps"))
		printInstallation(stdout, cfg.DataDir, *a.Installation, target, consoleLink(cfg, a.Addr("console"), *a.Installation))
	}
	return a.Run(ctx)
}
