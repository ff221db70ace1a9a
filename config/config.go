// Package config holds Postern's settings: their defaults, which live here
// in code, and how a configuration file, POSTERN_* environment variables
// and command-line flags override them, validated with errors that name
// the setting.
package config

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/internal/domainname"
)

// Config is every setting of `postern serve`.
type Config struct {
	ConfigFile string
	DataDir    string
	Hostname   string
	// Store is the storage backend: "" for the bbolt file in DataDir, or
	// a PostgreSQL DSN; NodeName names this node among those sharing it.
	Store    string
	NodeName string

	SMTPAddr  string // STARTTLS listener; "" or "off" turns it off
	SMTPSAddr string // implicit TLS listener
	TLSCert   string
	TLSKey    string

	APIAddr   string // HTTP API listener; "" or "off" turns it off
	APITLS    bool   // the API serves HTTPS with the SMTP certificate
	PublicURL string // where people reach the API (ServerLink); "" = derived from APIAddr

	MetricsAddr string // /metrics, /healthz and /readyz; "" or "off" turns it off
	PprofAddr   string // Go's profiler, /debug/pprof/; off unless set

	ConsoleAddr string // the web console's listener; "" or "off" turns it off
	ConsoleTLS  bool   // the console serves HTTPS with the SMTP certificate

	MaxMessageSize   int64
	MaxRecipients    int
	MaxLineLength    int
	MaxSessions      int
	MaxSessionsPerIP int
	// Caps on a tenant's growth.
	MaxDomainsPerAccount int
	MaxServersPerAccount int
	MaxTokensPerServer   int
	// DomainReverifyDays: a verified domain whose DKIM records are missing
	// that many days in a row loses its verification.
	DomainReverifyDays int
	PreauthTimeout     time.Duration
	MaxInflightBytes   int64
	CommandTimeout     time.Duration
	WriteTimeout       time.Duration
	SessionTimeout     time.Duration
	AllowPlaintextAuth bool
	AuthMaxFailures    int
	AuthFailureWindow  time.Duration

	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string

	// Delivery (the relay).
	DNS               string   // DNS server, host:port or host (port 53); "" = the system's resolver
	MXPort            int      // port of MX hosts
	Smarthost         string   // host:port relaying outbound mail; "" = direct MX delivery
	SmarthostUser     string   // AUTH to the smarthost; "" = no AUTH
	SmarthostPassword string   // with SmarthostUser
	SmarthostTLS      string   // SmarthostSTARTTLS or SmarthostImplicitTLS; TLS is always required
	SmarthostDomains  []string // recipient domains sent through the smarthost (lower case); empty = all
	SenderPolicy      string   // PolicyRegistered, PolicyVerified or PolicyAny
	ReturnPathDomain  string   // domain of per-message MAIL FROM addresses; "" = the client's MAIL FROM
	MaxLifetime       time.Duration
	RetryBase         time.Duration
	RetryMaxInterval  time.Duration
	RelayWorkers      int
	RelayPerServer    int
	RelayPerDomain    int
	TLSFallback       bool // after a failed STARTTLS handshake with an MX, retry once without TLS
	// AllowPrivateDestinations lets recipients at private address
	// literals in, and the relay connect to loopback, private and
	// link-local addresses; off, a tenant cannot aim Postern's SMTP
	// client at this machine or its private networks.
	AllowPrivateDestinations bool
	// MTASTSPort is the HTTPS port MTA-STS policies are fetched from.
	MTASTSPort int
	// DANE is DANEOn or DANEOff.
	DANE string

	// Webhooks. WebhookRetrySchedule is the waits before each retry of a
	// failed call, "1m,5m,…"; WebhookAllowPrivate lets webhooks call
	// loopback, private and link-local addresses.
	WebhookRetrySchedule string
	WebhookAllowPrivate  bool

	// Mail to Postern itself: InboundAddr listens (off by default),
	// InboundDomain names the addresses it takes (the hostname by
	// default); SendingIPs are this installation's outbound addresses,
	// which DMARC reports name.
	InboundAddr   string
	InboundDomain string
	SendingIPs    []string

	// RetentionInterval is how often messages past their server's
	// retention are purged.
	RetentionInterval time.Duration
}

// Values of SmarthostTLS.
const (
	SmarthostSTARTTLS    = "starttls"
	SmarthostImplicitTLS = "implicit"
)

// Values of DANE.
const (
	DANEOn  = "on"
	DANEOff = "off"
)

// Values of SenderPolicy: which From domains a Live server may send from.
const (
	PolicyRegistered = "registered" // a domain of the server's account
	PolicyVerified   = "verified"   // such a domain whose DKIM records were found in DNS
	PolicyAny        = "any"        // any domain (messages from unknown domains go unsigned)
)

// Setting documents one setting: its name (the flag, and the key in the
// configuration file), its environment variable and its meaning.
type Setting struct {
	Name    string
	Env     string
	Default string
	Usage   string
}

// bind declares every setting on fs, bound to c, with the defaults in code.
// It is the one place settings are defined.
func bind(fs *flag.FlagSet, c *Config) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	fs.StringVar(&c.ConfigFile, "config", "", "configuration file (name = value lines); none needed")
	fs.StringVar(&c.DataDir, "data", "./postern-data", "data directory: the store, and the self-signed certificate when none is configured")
	fs.StringVar(&c.Hostname, "hostname", host, "name in the SMTP greeting, Received fields and Message-IDs (default: the machine's hostname)")
	fs.StringVar(&c.Store, "store", "", "storage: empty for the embedded bbolt file in the data directory, or a PostgreSQL DSN (postgres://user:password@host/db) that several nodes share; with a password, prefer POSTERN_STORE or the configuration file to a flag, which ps shows")
	fs.StringVar(&c.NodeName, "node-name", host, "this node's name in the queue leases it holds, unique among the nodes sharing a PostgreSQL store (default: the machine's hostname)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", "127.0.0.1:2525", `SMTP submission listener with STARTTLS ("off" turns it off)`)
	fs.StringVar(&c.SMTPSAddr, "smtps-addr", "off", `SMTP listener with implicit TLS, e.g. :465 ("off" turns it off)`)
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate chain, PEM (default: a self-signed one generated into the data directory)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key, PEM (with tls-cert)")
	fs.StringVar(&c.APIAddr, "api-addr", "127.0.0.1:8080", `HTTP API listener ("off" turns it off)`)
	fs.BoolVar(&c.APITLS, "api-tls", false, "serve the HTTP API over HTTPS, with the certificate of tls-cert (or the self-signed one)")
	fs.StringVar(&c.ConsoleAddr, "console-addr", "127.0.0.1:8081", `web console listener, where people sign in ("off" turns it off)`)
	fs.BoolVar(&c.ConsoleTLS, "console-tls", false, "serve the console over HTTPS, with the certificate of tls-cert (or the self-signed one); its cookies are then Secure")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "127.0.0.1:9090", `listener of Prometheus metrics (/metrics) and health checks (/healthz, /readyz); no token, keep it private ("off" turns it off)`)
	fs.StringVar(&c.PprofAddr, "pprof-addr", "off", `listener of Go's profiler (/debug/pprof/: CPU, heap, goroutines, execution traces), for finding where time goes; no token and it shows the process's memory, so bind it to loopback ("off", the default, turns it off)`)
	fs.StringVar(&c.PublicURL, "public-url", "", "the API's URL as people reach it, for the ServerLink of servers (default: derived from api-addr)")
	fs.Int64Var(&c.MaxMessageSize, "max-message-size", 10<<20, "largest message accepted, in bytes")
	fs.IntVar(&c.MaxRecipients, "max-recipients", 50, "most recipients of one message")
	fs.IntVar(&c.MaxLineLength, "max-line-length", 4096, "longest line of a message, in bytes; a longer one gets 554 5.6.0 (command lines may be up to 64 KiB or 16 times this)")
	fs.IntVar(&c.MaxSessions, "max-sessions", 1000, "most concurrent SMTP connections; more get 421 4.3.2")
	fs.IntVar(&c.MaxSessionsPerIP, "max-sessions-per-ip", 20, "most concurrent SMTP connections from one client address (an IPv6 client's /64); more get 421 4.7.0")
	fs.IntVar(&c.MaxDomainsPerAccount, "max-domains-per-account", 100, "most sending domains one account may have; more are refused (422 over the API)")
	fs.IntVar(&c.MaxServersPerAccount, "max-servers-per-account", 1000, "most servers one account may have; more are refused (422 over the API)")
	fs.IntVar(&c.DomainReverifyDays, "domain-reverify-days", 7, "a verified domain whose DKIM records are not found in DNS by the daily check this many days in a row loses its verification (and another account that proves the name may then take it)")
	fs.IntVar(&c.MaxTokensPerServer, "max-tokens-per-server", 20, "most tokens one server may have; more are refused (422 over the API)")
	fs.DurationVar(&c.PreauthTimeout, "preauth-timeout", 30*time.Second, "how long an SMTP session may go on, from its connection, without a successful AUTH; then 421 4.7.0 and close (before AUTH, at most 10 commands besides AUTH are allowed too)")
	fs.Int64Var(&c.MaxInflightBytes, "max-inflight-bytes", 256<<20, "most bytes of message data held in memory at once, across sessions; a message that finds no room within 10s gets 451 4.3.2")
	fs.DurationVar(&c.CommandTimeout, "command-timeout", 5*time.Minute, "how long a client may take to send a command, and to send a message's data")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", time.Minute, "how long a reply may take to reach a client")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", time.Hour, "the longest an SMTP connection may last")
	fs.BoolVar(&c.AllowPlaintextAuth, "allow-plaintext-auth", false, "allow AUTH without TLS from non-loopback clients (loopback clients may always)")
	fs.IntVar(&c.AuthMaxFailures, "auth-max-failures", 5, "failed AUTH attempts from one address, within auth-failure-window, that shut it out (0: never)")
	fs.DurationVar(&c.AuthFailureWindow, "auth-failure-window", 5*time.Minute, "how far back AUTH failures count, and how long a shut-out address waits")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long open sessions may take to finish on SIGTERM or SIGINT")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error (recipient addresses appear at debug only)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "text or json")

	fs.StringVar(&c.DNS, "dns", "", "DNS server for MX, address and DKIM TXT lookups, host:port or host (port 53) (default: the system's resolver)")
	fs.IntVar(&c.MXPort, "mx-port", 25, "port to connect to on MX hosts (tests use a high port)")
	fs.StringVar(&c.Smarthost, "smarthost", "", "host:port of an upstream relay that outbound mail goes through, with TLS required (default: none, direct delivery to MX hosts)")
	fs.StringVar(&c.SmarthostUser, "smarthost-user", "", "username for AUTH to the smarthost (with smarthost-password; default: no AUTH)")
	fs.StringVar(&c.SmarthostPassword, "smarthost-password", "", "password for AUTH to the smarthost; prefer POSTERN_SMARTHOST_PASSWORD or the configuration file to a flag, which ps shows")
	fs.StringVar(&c.SmarthostTLS, "smarthost-tls", SmarthostSTARTTLS, "TLS to the smarthost: starttls (typically port 587) or implicit (port 465); TLS is always required")
	fs.Var((*domainList)(&c.SmarthostDomains), "smarthost-domains", "comma-separated recipient domains sent through the smarthost, the rest going direct to their MX hosts (default: every domain, when smarthost is set)")
	fs.StringVar(&c.SenderPolicy, "sender-policy", PolicyVerified, "which sender domains (From, MAIL FROM, Sender, Resent-From) a Live server may send from: verified (a domain of its account whose DKIM records are in DNS), registered (any domain of its account) or any; Sandbox servers are exempt")
	fs.StringVar(&c.ReturnPathDomain, "return-path-domain", "", "domain of the per-message envelope sender (MAIL FROM) of deliveries, bounce+<signed message reference>@<domain>, whose MX must lead to the inbound listener so that bounces and complaints arriving later are recorded against their message (default: inbound-domain when inbound-addr is on, else the client's MAIL FROM)")
	fs.DurationVar(&c.MaxLifetime, "max-lifetime", 48*time.Hour, "how long a recipient is retried after temporary failures before it bounces as expired")
	fs.DurationVar(&c.RetryBase, "retry-base", 5*time.Minute, "wait before the first retry; later waits grow from it, with jitter")
	fs.DurationVar(&c.RetryMaxInterval, "retry-max-interval", 4*time.Hour, "the longest wait between two retries (at least retry-base)")
	fs.IntVar(&c.RelayWorkers, "relay-workers", 64, "most deliveries in progress at once")
	fs.IntVar(&c.RelayPerServer, "relay-per-server", 16, "most deliveries in progress at once for one server")
	fs.IntVar(&c.RelayPerDomain, "relay-per-domain", 20, "most deliveries in progress at once to one recipient domain (Postfix's default_destination_concurrency_limit)")
	fs.BoolVar(&c.AllowPrivateDestinations, "allow-private-destinations", false, "deliver to loopback, private and link-local addresses, named by an MX answer or an address literal (user@[10.0.0.5]); off, RCPT refuses such literals with 550 5.7.1 and such MX answers bounce; a smarthost is exempt")
	fs.IntVar(&c.MTASTSPort, "mta-sts-port", 443, "HTTPS port MTA-STS policies are fetched from (https://mta-sts.<domain>/.well-known/mta-sts.txt); tests serve policies on a high port")
	fs.StringVar(&c.InboundAddr, "inbound-addr", "off", `SMTP listener for mail to Postern itself: the DMARC reports receivers send to dmarc+<token>@<inbound-domain>; in production ":25", with the MX of inbound-domain pointing here ("off" turns it off)`)
	fs.StringVar(&c.InboundDomain, "inbound-domain", "", "the domain of the addresses the inbound listener takes, whose MX points at Postern (default: hostname)")
	fs.Var((*domainList)(&c.SendingIPs), "sending-ips", "comma-separated IP addresses Postern sends from: DMARC sources at these addresses count as Postern's (default: none; a DKIM pass with Postern's selectors counts anyway)")
	fs.StringVar(&c.WebhookRetrySchedule, "webhook-retry-schedule", "1m,5m,10m,10m,10m,15m", "the waits before each retry of a webhook call that timed out, failed on the network or got 408, 429 or 5xx (Postmark's schedule); after the last, the call is given up")
	fs.BoolVar(&c.WebhookAllowPrivate, "webhook-allow-private", false, "let webhooks call loopback, private and link-local addresses; off, such a URL is refused when the webhook is created and at each call, after DNS")
	fs.StringVar(&c.DANE, "dane", DANEOn, "on: hold delivery to MX hosts' DNSSEC-validated TLSA records (DANE, RFC 7672), trusting the AD bit of the dns resolver only when it is on a loopback address (otherwise DANE is skipped, and the log says why); off: never look TLSA records up")
	fs.BoolVar(&c.TLSFallback, "tls-fallback", true, "after a failed STARTTLS handshake with an MX host, retry once without TLS (Postfix's \"may\" level); never for the smarthost, nor where an MTA-STS policy in enforce mode or DANE demands TLS")
	fs.DurationVar(&c.RetentionInterval, "retention-interval", time.Hour, "how often messages past their server's RetentionDays are purged (each server's retention is on the Server object)")
}

// domainList is a comma-separated list of domain names, kept in lower
// case without trailing dots. Setting it replaces the list, so that each
// layer (file, environment, flag) overrides the one below.
type domainList []string

func (l *domainList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *domainList) Set(v string) error {
	var out []string
	if strings.TrimSpace(v) != "" {
		for _, d := range strings.Split(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), ".")))
		}
	}
	*l = out
	return nil
}

// EnvName is a setting's environment variable.
func EnvName(name string) string {
	return "POSTERN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Settings lists every setting with its default, in alphabetical order.
func Settings() []Setting {
	fs := flag.NewFlagSet("postern", flag.ContinueOnError)
	bind(fs, &Config{})
	var out []Setting
	fs.VisitAll(func(f *flag.Flag) {
		out = append(out, Setting{Name: f.Name, Env: EnvName(f.Name), Default: f.DefValue, Usage: f.Usage})
	})
	return out
}

// SettingsMarkdown is the reference page of every setting, docs/settings.md,
// made from the same declarations as the flags, so that it cannot say
// other than the code: "postern settings -markdown > docs/settings.md".
func SettingsMarkdown() string {
	var b strings.Builder
	b.WriteString("# Settings\n\n")
	b.WriteString("Generated by `postern settings -markdown` from the code's settings; do not edit.\n\n")
	b.WriteString("Every setting is a flag of `postern serve` (and of the commands that open the store), an\n")
	b.WriteString("environment variable, and a line of the configuration file (`-config`, `key = value`):\n")
	b.WriteString("a flag beats its variable, which beats the file, which beats the default.\n")
	b.WriteString("An address set to the empty string or `off` turns that listener off.\n\n")
	b.WriteString("| setting | variable | default | what it does |\n|---|---|---|---|\n")
	for _, st := range Settings() {
		def := "`" + st.Default + "`"
		switch {
		case st.Name == "hostname" || st.Name == "node-name":
			def = "the machine's hostname"
		case st.Default == "":
			def = "none"
		}
		usage := strings.ReplaceAll(st.Usage, "|", "\\|")
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", st.Name, st.Env, def, usage)
	}
	return b.String()
}

// FlagSet returns a flag set for a subcommand with every setting declared,
// bound to c.
func FlagSet(name string, c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	bind(fs, c)
	return fs
}

// Load reads the settings: the defaults in code, then the configuration
// file, then the environment, then the command line, each overriding the
// one before. fs must come from FlagSet(…, c) and be parsed already.
// lookupEnv is os.LookupEnv outside tests. A variable set to the empty
// string counts as set: for a listener address it means "off".
func Load(fs *flag.FlagSet, c *Config, lookupEnv func(string) (string, bool)) error {
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	// Only settings come from the file and the environment; flags a
	// subcommand adds for itself (init -json) are command-line only.
	isSetting := map[string]bool{}
	for _, st := range Settings() {
		isSetting[st.Name] = st.Name != "config"
	}

	if !onCommandLine["config"] {
		if v, ok := lookupEnv(EnvName("config")); ok {
			c.ConfigFile = v
		}
	}
	var fromFile map[string]fileValue
	if c.ConfigFile != "" {
		f, err := os.Open(c.ConfigFile)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		fromFile, err = parseFile(f, c.ConfigFile, isSetting)
		f.Close()
		if err != nil {
			return err
		}
	}
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if onCommandLine[f.Name] || !isSetting[f.Name] {
			return
		}
		if v, ok := lookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("config: %s (from %s): invalid value %q: %v", f.Name, EnvName(f.Name), v, unwrapFlagErr(err)))
			}
			return
		}
		if fv, ok := fromFile[f.Name]; ok {
			if err := fs.Set(f.Name, fv.value); err != nil {
				errs = append(errs, fmt.Errorf("config: %s (%s:%d): invalid value %q: %v", f.Name, c.ConfigFile, fv.line, fv.value, unwrapFlagErr(err)))
			}
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return c.Validate()
}

func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

type fileValue struct {
	value string
	line  int
}

// parseFile reads "name = value" lines; blank lines and lines starting
// with # are ignored, and a value may be quoted.
func parseFile(r io.Reader, path string, isSetting map[string]bool) (map[string]fileValue, error) {
	out := map[string]fileValue{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config: %s:%d: expected \"name = value\", got %q", path, n, line)
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		if !isSetting[name] {
			return nil, fmt.Errorf("config: %s:%d: unknown setting %q", path, n, name)
		}
		if prev, dup := out[name]; dup {
			return nil, fmt.Errorf("config: %s:%d: %s already set on line %d", path, n, name, prev.line)
		}
		out[name] = fileValue{value: value, line: n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return out, nil
}

// APIURL is the API's public URL: public-url, or else one derived from
// the address the API listens on (addr, api-addr if empty), an
// unspecified host becoming 127.0.0.1.
func (c *Config) APIURL(addr string) string {
	if c.PublicURL != "" {
		return strings.TrimSuffix(c.PublicURL, "/")
	}
	if addr == "" {
		addr = c.APIAddr
	}
	return listenerURL(c.APITLS, addr, "127.0.0.1:8080")
}

// ConsoleURL is the console's URL as derived from the address it listens
// on (addr, console-addr if empty), an unspecified host becoming
// 127.0.0.1.
func (c *Config) ConsoleURL(addr string) string {
	if addr == "" {
		addr = c.ConsoleAddr
	}
	return listenerURL(c.ConsoleTLS, addr, "127.0.0.1:8081")
}

// listenerURL is the URL of an HTTP listener on addr (fallback when addr
// is not host:port), an unspecified host becoming 127.0.0.1.
func listenerURL(tls bool, addr, fallback string) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port, _ = net.SplitHostPort(fallback)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// Off reports whether a listener address turns the listener off.
func Off(addr string) bool { return addr == "" || strings.EqualFold(addr, "off") }

// Validate checks the settings, naming the setting at fault.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data", "must not be empty")
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		bad("store", "must be empty (bbolt in the data directory) or a postgres:// DSN")
	}
	if c.NodeName == "" {
		bad("node-name", "must not be empty")
	}
	if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		bad("hostname", "must be a host name, got %q", c.Hostname)
	}
	for _, a := range []struct{ name, value string }{{"smtp-addr", c.SMTPAddr}, {"smtps-addr", c.SMTPSAddr}} {
		if Off(a.value) {
			continue
		}
		if _, port, err := net.SplitHostPort(a.value); err != nil || port == "" {
			bad(a.name, "must be host:port or \"off\", got %q", a.value)
		}
	}
	for _, a := range []struct{ name, value string }{{"api-addr", c.APIAddr}, {"console-addr", c.ConsoleAddr}, {"metrics-addr", c.MetricsAddr}, {"pprof-addr", c.PprofAddr}, {"inbound-addr", c.InboundAddr}} {
		if Off(a.value) {
			continue
		}
		if _, port, err := net.SplitHostPort(a.value); err != nil || port == "" {
			bad(a.name, "must be host:port or \"off\", got %q", a.value)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			bad("public-url", "must be an http or https URL such as https://postern.example.com, got %q", c.PublicURL)
		}
	}
	if Off(c.SMTPAddr) && Off(c.SMTPSAddr) {
		bad("smtp-addr", "and smtps-addr are both off: Postern would accept no mail")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "and tls-key must be set together")
	}
	if c.MaxMessageSize < 1024 {
		bad("max-message-size", "must be at least 1024 bytes, got %d", c.MaxMessageSize)
	}
	if c.MaxRecipients < 1 {
		bad("max-recipients", "must be at least 1, got %d", c.MaxRecipients)
	}
	if c.MaxLineLength < 1000 {
		bad("max-line-length", "must be at least 1000 (RFC 5321), got %d", c.MaxLineLength)
	}
	if c.MaxSessions < 1 {
		bad("max-sessions", "must be at least 1, got %d", c.MaxSessions)
	}
	for _, c := range []struct {
		name  string
		value int
	}{{"max-domains-per-account", c.MaxDomainsPerAccount}, {"max-servers-per-account", c.MaxServersPerAccount}, {"max-tokens-per-server", c.MaxTokensPerServer}, {"domain-reverify-days", c.DomainReverifyDays}} {
		if c.value < 1 {
			bad(c.name, "must be at least 1, got %d", c.value)
		}
	}
	if c.MaxSessionsPerIP < 1 {
		bad("max-sessions-per-ip", "must be at least 1, got %d", c.MaxSessionsPerIP)
	}
	if c.MaxInflightBytes < 1<<20 {
		bad("max-inflight-bytes", "must be at least 1 MiB (1048576), got %d", c.MaxInflightBytes)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"command-timeout", c.CommandTimeout}, {"write-timeout", c.WriteTimeout}, {"session-timeout", c.SessionTimeout}, {"preauth-timeout", c.PreauthTimeout}, {"shutdown-timeout", c.ShutdownTimeout}} {
		if d.value <= 0 {
			bad(d.name, "must be positive, got %s", d.value)
		}
	}
	if c.AuthMaxFailures < 0 {
		bad("auth-max-failures", "must not be negative, got %d", c.AuthMaxFailures)
	}
	if c.AuthMaxFailures > 0 && c.AuthFailureWindow <= 0 {
		bad("auth-failure-window", "must be positive, got %s", c.AuthFailureWindow)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "must be text or json, got %q", c.LogFormat)
	}
	c.validateRelay(bad)
	return errors.Join(errs...)
}

// validateRelay checks the delivery settings.
func (c *Config) validateRelay(bad func(name, format string, args ...any)) {
	if c.DNS != "" && !validServerAddr(c.DNS, false) {
		bad("dns", "must be host:port, a host or an IP address (port 53), or empty for the system's resolver, got %q", c.DNS)
	}
	if c.MXPort < 1 || c.MXPort > 65535 {
		bad("mx-port", "must be a port number from 1 to 65535, got %d", c.MXPort)
	}
	if c.Smarthost != "" && !validServerAddr(c.Smarthost, true) {
		bad("smarthost", "must be host:port, e.g. smtp.example.net:587, or empty for none, got %q", c.Smarthost)
	}
	if c.Smarthost == "" {
		if c.SmarthostUser != "" {
			bad("smarthost-user", "is set but smarthost is not: set smarthost too, or remove smarthost-user")
		}
		if len(c.SmarthostDomains) > 0 {
			bad("smarthost-domains", "is set but smarthost is not: set smarthost too, or remove smarthost-domains")
		}
	}
	// The password is never echoed: errors may reach logs.
	if c.SmarthostUser != "" && c.SmarthostPassword == "" {
		bad("smarthost-password", "must be set with smarthost-user")
	}
	if c.SmarthostUser == "" && c.SmarthostPassword != "" {
		bad("smarthost-user", "must be set with smarthost-password")
	}
	if c.MTASTSPort < 1 || c.MTASTSPort > 65535 {
		bad("mta-sts-port", "must be a port number from 1 to 65535, got %d", c.MTASTSPort)
	}
	for _, ip := range c.SendingIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("sending-ips", "%q is not an IP address (the value is a comma-separated list)", ip)
		}
	}
	if c.InboundDomain != "" && !domainname.Valid(c.InboundDomain) {
		bad("inbound-domain", "must be a domain name, got %q", c.InboundDomain)
	}
	if _, err := c.WebhookSchedule(); err != nil {
		bad("webhook-retry-schedule", "%v", err)
	}
	switch c.DANE {
	case DANEOn, DANEOff:
	default:
		bad("dane", "must be on or off, got %q", c.DANE)
	}
	switch c.SmarthostTLS {
	case SmarthostSTARTTLS, SmarthostImplicitTLS:
	default:
		bad("smarthost-tls", "must be starttls or implicit, got %q", c.SmarthostTLS)
	}
	for _, d := range c.SmarthostDomains {
		if !domainname.Valid(d) {
			bad("smarthost-domains", "%q is not a domain name (the value is a comma-separated list of domains)", d)
		}
	}
	switch c.SenderPolicy {
	case PolicyRegistered, PolicyVerified, PolicyAny:
	default:
		bad("sender-policy", "must be registered, verified or any, got %q", c.SenderPolicy)
	}
	if c.ReturnPathDomain != "" && !domainname.Valid(c.ReturnPathDomain) {
		bad("return-path-domain", "must be a domain name, e.g. bounces.example.com, or empty, got %q", c.ReturnPathDomain)
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{{"max-lifetime", c.MaxLifetime}, {"retry-base", c.RetryBase}, {"retry-max-interval", c.RetryMaxInterval}, {"retention-interval", c.RetentionInterval}} {
		if d.value <= 0 {
			bad(d.name, "must be positive, got %s", d.value)
		}
	}
	if c.RetryBase > 0 && c.RetryMaxInterval > 0 && c.RetryMaxInterval < c.RetryBase {
		bad("retry-max-interval", "must be at least retry-base (%s), got %s", c.RetryBase, c.RetryMaxInterval)
	}
	for _, n := range []struct {
		name  string
		value int
	}{{"relay-workers", c.RelayWorkers}, {"relay-per-server", c.RelayPerServer}, {"relay-per-domain", c.RelayPerDomain}} {
		if n.value < 1 {
			bad(n.name, "must be at least 1, got %d", n.value)
		}
	}
}

// validServerAddr reports whether addr is host:port with a port from 1 to
// 65535, or, unless needPort, a bare host name or IP address.
func validServerAddr(addr string, needPort bool) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if needPort {
			return false
		}
		return net.ParseIP(addr) != nil || domainname.Valid(addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || host == "" {
		return false
	}
	return net.ParseIP(host) != nil || domainname.Valid(host)
}

// WebhookSchedule reads webhook-retry-schedule: durations separated by
// commas, each positive; empty for no retries.
func (c *Config) WebhookSchedule() ([]time.Duration, error) {
	out := []time.Duration{}
	if strings.TrimSpace(c.WebhookRetrySchedule) == "" {
		return out, nil
	}
	for _, part := range strings.Split(c.WebhookRetrySchedule, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("must be positive durations separated by commas, such as 1m,5m,10m; %q is not one", strings.TrimSpace(part))
		}
		out = append(out, d)
	}
	return out, nil
}

// Inbound is inbound-domain, or the hostname when it is not set.
func (c *Config) Inbound() string {
	if c.InboundDomain != "" {
		return domainname.Normalize(c.InboundDomain)
	}
	return strings.ToLower(c.Hostname)
}
