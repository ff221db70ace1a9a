package config_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/config"
)

// env is a fake environment for Load.
type env map[string]string

func (e env) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// load parses args and loads the settings over env.
func load(t *testing.T, args []string, e env) (*config.Config, error) {
	t.Helper()
	var c config.Config
	fs := config.FlagSet("serve", &c)
	fs.SetOutput(new(bytes.Buffer))
	if err := fs.Parse(args); err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	return &c, config.Load(fs, &c, e.lookup)
}

// mustLoad is load that must succeed.
func mustLoad(t *testing.T, args []string, e env) *config.Config {
	t.Helper()
	c, err := load(t, args, e)
	if err != nil {
		t.Fatalf("Load(args %q, env %v): %v", args, e, err)
	}
	return c
}

// writeFile writes a configuration file into a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "postern.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantErr checks that err mentions every fragment.
func wantErr(t *testing.T, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one mentioning %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not mention %q", err, f)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, nil, env{})
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	want := config.Config{
		DataDir:              "./postern-data",
		Hostname:             host,
		NodeName:             host,
		SMTPAddr:             "127.0.0.1:2525",
		SMTPSAddr:            "off",
		MaxMessageSize:       10 << 20,
		MaxRecipients:        50,
		MaxLineLength:        4096,
		MaxSessions:          1000,
		MaxSessionsPerIP:     20,
		MaxDomainsPerAccount: 100, MaxServersPerAccount: 1000, MaxTokensPerServer: 20, DomainReverifyDays: 7,
		PreauthTimeout:       30 * time.Second,
		MaxInflightBytes:     256 << 20,
		CommandTimeout:       5 * time.Minute,
		WriteTimeout:         time.Minute,
		SessionTimeout:       time.Hour,
		AuthMaxFailures:      5,
		AuthFailureWindow:    5 * time.Minute,
		ShutdownTimeout:      30 * time.Second,
		LogLevel:             "info",
		LogFormat:            "text",
		MXPort:               25,
		APIAddr:              "127.0.0.1:8080",
		MetricsAddr:          "127.0.0.1:9090",
		PprofAddr:            "off",
		ConsoleAddr:          "127.0.0.1:8081",
		SmarthostTLS:         "starttls",
		SenderPolicy:         "verified",
		MaxLifetime:          48 * time.Hour,
		RetryBase:            5 * time.Minute,
		RetryMaxInterval:     4 * time.Hour,
		RelayWorkers:         64,
		RelayPerServer:       16,
		RelayPerDomain:       20,
		TLSFallback:          true,
		MTASTSPort:           443,
		DANE:                 "on",
		WebhookRetrySchedule: "1m,5m,10m,10m,10m,15m",
		InboundAddr:          "off",
		RetentionInterval:    time.Hour,
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *c, want)
	}
	if !config.Off(c.SMTPSAddr) || config.Off(c.SMTPAddr) {
		t.Errorf("by default smtp-addr should be on and smtps-addr off")
	}
}

// TestPrecedence sets a string, an int, a duration and a bool setting in
// every combination of file, environment and command line: the highest
// layer present wins (default < file < environment < flag).
func TestPrecedence(t *testing.T) {
	type values struct {
		logLevel       string
		maxRecipients  int
		commandTimeout time.Duration
		plaintextAuth  bool
	}
	def := values{"info", 50, 5 * time.Minute, false}
	file := values{"warn", 10, time.Minute, true}
	environ := values{"error", 20, 2 * time.Minute, false}
	flags := values{"debug", 30, 3 * time.Minute, true}

	path := writeFile(t, `# a file setting all four
log-level = warn
max-recipients = 10
command-timeout = "1m"
allow-plaintext-auth = true
`)
	envLayer := env{
		"POSTERN_LOG_LEVEL":            "error",
		"POSTERN_MAX_RECIPIENTS":       "20",
		"POSTERN_COMMAND_TIMEOUT":      "2m",
		"POSTERN_ALLOW_PLAINTEXT_AUTH": "false",
	}
	// Both -name and --name forms, and both -name=value and -name value.
	flagLayer := []string{"-log-level=debug", "--max-recipients", "30", "-command-timeout=3m", "--allow-plaintext-auth"}

	for mask := range 8 {
		useFile, useEnv, useFlags := mask&1 != 0, mask&2 != 0, mask&4 != 0
		name := strings.Join([]string{map[bool]string{true: "file", false: "-"}[useFile], map[bool]string{true: "env", false: "-"}[useEnv], map[bool]string{true: "flags", false: "-"}[useFlags]}, ",")
		t.Run(name, func(t *testing.T) {
			e := env{}
			var args []string
			want := def
			if useFile {
				e["POSTERN_CONFIG"] = path
				want = file
			}
			if useEnv {
				for k, v := range envLayer {
					e[k] = v
				}
				want = environ
			}
			if useFlags {
				args = flagLayer
				want = flags
			}
			c := mustLoad(t, args, e)
			got := values{c.LogLevel, c.MaxRecipients, c.CommandTimeout, c.AllowPlaintextAuth}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestConfigFileChoice(t *testing.T) {
	fromEnv := writeFile(t, "max-recipients = 7\n")
	fromFlag := writeFile(t, "max-recipients = 8\n")

	c := mustLoad(t, nil, env{"POSTERN_CONFIG": fromEnv})
	if c.ConfigFile != fromEnv || c.MaxRecipients != 7 {
		t.Errorf("POSTERN_CONFIG: ConfigFile %q, max-recipients %d; want %q, 7", c.ConfigFile, c.MaxRecipients, fromEnv)
	}
	c = mustLoad(t, []string{"-config", fromFlag}, env{"POSTERN_CONFIG": fromEnv})
	if c.ConfigFile != fromFlag || c.MaxRecipients != 8 {
		t.Errorf("-config over POSTERN_CONFIG: ConfigFile %q, max-recipients %d; want %q, 8", c.ConfigFile, c.MaxRecipients, fromFlag)
	}
	// An empty POSTERN_CONFIG means no file.
	c = mustLoad(t, nil, env{"POSTERN_CONFIG": ""})
	if c.ConfigFile != "" || c.MaxRecipients != 50 {
		t.Errorf("empty POSTERN_CONFIG: ConfigFile %q, max-recipients %d; want none, 50", c.ConfigFile, c.MaxRecipients)
	}
	missing := filepath.Join(t.TempDir(), "nope.conf")
	_, err := load(t, nil, env{"POSTERN_CONFIG": missing})
	wantErr(t, err, missing)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error %v is not os.ErrNotExist", err)
	}
}

func TestFileSyntax(t *testing.T) {
	path := writeFile(t, `
# comment
   # indented comment

  data   =   /srv/postern  
hostname="mx.example.com"
smtps-addr = ":465"
log-format=json
tls-cert = ""
`)
	c := mustLoad(t, []string{"-config", path}, env{})
	if c.DataDir != "/srv/postern" || c.Hostname != "mx.example.com" || c.SMTPSAddr != ":465" || c.LogFormat != "json" || c.TLSCert != "" {
		t.Errorf("got data %q, hostname %q, smtps-addr %q, log-format %q, tls-cert %q", c.DataDir, c.Hostname, c.SMTPSAddr, c.LogFormat, c.TLSCert)
	}
}

func TestEmptyEnvTurnsListenerOff(t *testing.T) {
	path := writeFile(t, "smtps-addr = :465\n")
	c := mustLoad(t, nil, env{"POSTERN_CONFIG": path, "POSTERN_SMTPS_ADDR": ""})
	if c.SMTPSAddr != "" || !config.Off(c.SMTPSAddr) {
		t.Errorf("smtps-addr = %q with POSTERN_SMTPS_ADDR empty; want off", c.SMTPSAddr)
	}
	c = mustLoad(t, nil, env{"POSTERN_SMTPS_ADDR": "OFF"})
	if !config.Off(c.SMTPSAddr) {
		t.Errorf("smtps-addr %q: OFF should turn it off", c.SMTPSAddr)
	}
	// Unset stays the file's value.
	c = mustLoad(t, nil, env{"POSTERN_CONFIG": path})
	if c.SMTPSAddr != ":465" {
		t.Errorf("smtps-addr = %q, want :465 from the file", c.SMTPSAddr)
	}
	// Both listeners off is refused.
	_, err := load(t, nil, env{"POSTERN_SMTP_ADDR": "", "POSTERN_SMTPS_ADDR": ""})
	wantErr(t, err, "smtp-addr", "smtps-addr", "both off")
}

func TestOff(t *testing.T) {
	for addr, want := range map[string]bool{"": true, "off": true, "Off": true, "OFF": true, ":465": false, "127.0.0.1:2525": false, "of": false, " off": false} {
		if got := config.Off(addr); got != want {
			t.Errorf("Off(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name      string
		file      string // written to a file named by POSTERN_CONFIG when set
		env       env
		fragments []string // "PATH" stands for the file's path
	}{
		{name: "bad int in env", env: env{"POSTERN_MAX_RECIPIENTS": "many"},
			fragments: []string{"max-recipients (from POSTERN_MAX_RECIPIENTS)", `"many"`}},
		{name: "bad duration in env", env: env{"POSTERN_COMMAND_TIMEOUT": "5"},
			fragments: []string{"command-timeout (from POSTERN_COMMAND_TIMEOUT)", `"5"`}},
		{name: "bad bool in env", env: env{"POSTERN_ALLOW_PLAINTEXT_AUTH": "maybe"},
			fragments: []string{"allow-plaintext-auth (from POSTERN_ALLOW_PLAINTEXT_AUTH)", `"maybe"`}},
		{name: "bad int in file", file: "# settings\n\nmax-recipients = many\n",
			fragments: []string{"max-recipients (PATH:3)", `"many"`}},
		{name: "bad duration in file", file: "command-timeout = forever\n",
			fragments: []string{"command-timeout (PATH:1)", `"forever"`}},
		{name: "bad int64 in file", file: "log-level = info\nmax-message-size = 10MB\n",
			fragments: []string{"max-message-size (PATH:2)", `"10MB"`}},
		{name: "unknown key in file", file: "data = x\nmax-recipient = 5\n",
			fragments: []string{"PATH:2", "unknown setting", `"max-recipient"`}},
		{name: "config in file", file: "config = other.conf\n",
			fragments: []string{"PATH:1", "unknown setting", `"config"`}},
		{name: "duplicate key in file", file: "max-recipients = 5\n# again\nmax-recipients = 6\n",
			fragments: []string{"PATH:3", "max-recipients", "already set on line 1"}},
		{name: "malformed line", file: "data = x\nmax-recipients 5\n",
			fragments: []string{"PATH:2", `expected "name = value"`, `"max-recipients 5"`}},
		{name: "errors from env and file together", file: "max-sessions = lots\n", env: env{"POSTERN_MAX_RECIPIENTS": "many"},
			fragments: []string{"max-recipients (from POSTERN_MAX_RECIPIENTS)", "max-sessions (PATH:1)"}},
		{name: "validation after loading", env: env{"POSTERN_MAX_RECIPIENTS": "0"},
			fragments: []string{"max-recipients", "at least 1"}},
		{name: "bad relay int in env", env: env{"POSTERN_RELAY_WORKERS": "lots"},
			fragments: []string{"relay-workers (from POSTERN_RELAY_WORKERS)", `"lots"`}},
		{name: "bad relay duration in file", file: "max-lifetime = 2d\n",
			fragments: []string{"max-lifetime (PATH:1)", `"2d"`}},
		{name: "bad tls-fallback in env", env: env{"POSTERN_TLS_FALLBACK": "sometimes"},
			fragments: []string{"tls-fallback (from POSTERN_TLS_FALLBACK)", `"sometimes"`}},
		{name: "relay validation after loading", file: "smarthost = relay.example.net\n",
			fragments: []string{"config: smarthost: ", `"relay.example.net"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := env{}
			for k, v := range tc.env {
				e[k] = v
			}
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
				e["POSTERN_CONFIG"] = path
			}
			_, err := load(t, nil, e)
			var fragments []string
			for _, f := range tc.fragments {
				fragments = append(fragments, strings.ReplaceAll(f, "PATH", path))
			}
			wantErr(t, err, fragments...)
		})
	}
}

// A flag beats a bad value in the environment or the file: the bad value
// is never read.
func TestFlagHidesBadLowerLayers(t *testing.T) {
	path := writeFile(t, "max-recipients = many\n")
	c := mustLoad(t, []string{"-max-recipients=5"}, env{"POSTERN_CONFIG": path})
	if c.MaxRecipients != 5 {
		t.Errorf("max-recipients = %d, want 5", c.MaxRecipients)
	}
	c = mustLoad(t, []string{"-max-recipients=5"}, env{"POSTERN_MAX_RECIPIENTS": "many"})
	if c.MaxRecipients != 5 {
		t.Errorf("max-recipients = %d, want 5", c.MaxRecipients)
	}
}

// valid returns the default settings, which are valid.
func valid(t *testing.T) config.Config {
	t.Helper()
	var c config.Config
	fs := config.FlagSet("serve", &c)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		setting string // named in the message; "" means valid
		detail  string
	}{
		{"data empty", func(c *config.Config) { c.DataDir = "" }, "data", "must not be empty"},
		{"hostname empty", func(c *config.Config) { c.Hostname = "" }, "hostname", "must be a host name"},
		{"hostname with space", func(c *config.Config) { c.Hostname = "mx example" }, "hostname", `"mx example"`},
		{"hostname with newline", func(c *config.Config) { c.Hostname = "mx\r\nexample" }, "hostname", "must be a host name"},
		{"smtp-addr without port", func(c *config.Config) { c.SMTPAddr = "localhost" }, "smtp-addr", `"localhost"`},
		{"smtp-addr empty port", func(c *config.Config) { c.SMTPAddr = "localhost:" }, "smtp-addr", "host:port"},
		{"smtps-addr without port", func(c *config.Config) { c.SMTPSAddr = "465" }, "smtps-addr", `"465"`},
		{"smtps-addr port only", func(c *config.Config) { c.SMTPSAddr = ":465" }, "", ""},
		{"smtp-addr off, smtps-addr on", func(c *config.Config) { c.SMTPAddr, c.SMTPSAddr = "off", "[::1]:465" }, "", ""},
		{"both listeners off", func(c *config.Config) { c.SMTPAddr, c.SMTPSAddr = "", "off" }, "smtp-addr", "both off"},
		{"tls-cert without tls-key", func(c *config.Config) { c.TLSCert = "cert.pem" }, "tls-cert", "tls-key must be set together"},
		{"tls-key without tls-cert", func(c *config.Config) { c.TLSKey = "key.pem" }, "tls-cert", "tls-key must be set together"},
		{"tls-cert and tls-key", func(c *config.Config) { c.TLSCert, c.TLSKey = "cert.pem", "key.pem" }, "", ""},
		{"max-message-size too small", func(c *config.Config) { c.MaxMessageSize = 1023 }, "max-message-size", "at least 1024"},
		{"max-message-size minimum", func(c *config.Config) { c.MaxMessageSize = 1024 }, "", ""},
		{"max-recipients zero", func(c *config.Config) { c.MaxRecipients = 0 }, "max-recipients", "at least 1"},
		{"max-line-length below RFC 5321", func(c *config.Config) { c.MaxLineLength = 999 }, "max-line-length", "at least 1000"},
		{"max-line-length minimum", func(c *config.Config) { c.MaxLineLength = 1000 }, "", ""},
		{"max-sessions zero", func(c *config.Config) { c.MaxSessions = 0 }, "max-sessions", "at least 1"},
		{"max-inflight-bytes small", func(c *config.Config) { c.MaxInflightBytes = 1000 }, "max-inflight-bytes", "at least 1 MiB"},
		{"command-timeout zero", func(c *config.Config) { c.CommandTimeout = 0 }, "command-timeout", "must be positive"},
		{"write-timeout negative", func(c *config.Config) { c.WriteTimeout = -time.Second }, "write-timeout", "must be positive"},
		{"session-timeout zero", func(c *config.Config) { c.SessionTimeout = 0 }, "session-timeout", "must be positive"},
		{"shutdown-timeout zero", func(c *config.Config) { c.ShutdownTimeout = 0 }, "shutdown-timeout", "must be positive"},
		{"auth-max-failures negative", func(c *config.Config) { c.AuthMaxFailures = -1 }, "auth-max-failures", "must not be negative"},
		{"auth-failure-window zero", func(c *config.Config) { c.AuthFailureWindow = 0 }, "auth-failure-window", "must be positive"},
		{"auth-failure-window zero with throttling off", func(c *config.Config) { c.AuthMaxFailures, c.AuthFailureWindow = 0, 0 }, "", ""},
		{"log-level unknown", func(c *config.Config) { c.LogLevel = "verbose" }, "log-level", `"verbose"`},
		{"log-level upper case", func(c *config.Config) { c.LogLevel = "INFO" }, "log-level", "debug, info, warn or error"},
		{"log-format unknown", func(c *config.Config) { c.LogFormat = "xml" }, "log-format", "text or json"},

		// The HTTP API.
		{"api-addr off", func(c *config.Config) { c.APIAddr = "off" }, "", ""},
		{"api-addr empty", func(c *config.Config) { c.APIAddr = "" }, "", ""},
		{"api-addr any host", func(c *config.Config) { c.APIAddr = ":8080" }, "", ""},
		{"api-addr without port", func(c *config.Config) { c.APIAddr = "127.0.0.1" }, "api-addr", `host:port or "off", got "127.0.0.1"`},
		{"metrics-addr off", func(c *config.Config) { c.MetricsAddr = "off" }, "", ""},
		{"metrics-addr empty", func(c *config.Config) { c.MetricsAddr = "" }, "", ""},
		{"metrics-addr without port", func(c *config.Config) { c.MetricsAddr = "localhost" }, "metrics-addr", `host:port or "off", got "localhost"`},
		{"console-addr off", func(c *config.Config) { c.ConsoleAddr = "off" }, "", ""},
		{"console-addr without port", func(c *config.Config) { c.ConsoleAddr = "localhost" }, "console-addr", `host:port or "off", got "localhost"`},
		{"public-url https", func(c *config.Config) { c.PublicURL = "https://postern.example.com/" }, "", ""},
		{"public-url with path", func(c *config.Config) { c.PublicURL = "https://example.com/postern" }, "", ""},
		{"public-url no scheme", func(c *config.Config) { c.PublicURL = "postern.example.com" }, "public-url", `http or https URL`},
		{"public-url ftp", func(c *config.Config) { c.PublicURL = "ftp://postern.example.com" }, "public-url", `"ftp://postern.example.com"`},
		{"public-url query", func(c *config.Config) { c.PublicURL = "https://postern.example.com/?a=b" }, "public-url", "http or https URL"},

		// Delivery settings.
		{"dns host:port", func(c *config.Config) { c.DNS = "127.0.0.1:5353" }, "", ""},
		{"dns IPv4 without port", func(c *config.Config) { c.DNS = "192.0.2.53" }, "", ""},
		{"dns IPv6 without port", func(c *config.Config) { c.DNS = "2001:db8::53" }, "", ""},
		{"dns IPv6 with port", func(c *config.Config) { c.DNS = "[2001:db8::53]:53" }, "", ""},
		{"dns host name", func(c *config.Config) { c.DNS = "resolver.example.net" }, "", ""},
		{"dns bad port", func(c *config.Config) { c.DNS = "127.0.0.1:dns" }, "dns", `"127.0.0.1:dns"`},
		{"dns port out of range", func(c *config.Config) { c.DNS = "127.0.0.1:65536" }, "dns", "host:port"},
		{"dns empty host", func(c *config.Config) { c.DNS = ":53" }, "dns", `":53"`},
		{"dns with space", func(c *config.Config) { c.DNS = "127.0.0.1 53" }, "dns", "host:port"},
		{"mx-port zero", func(c *config.Config) { c.MXPort = 0 }, "mx-port", "from 1 to 65535, got 0"},
		{"mx-port too big", func(c *config.Config) { c.MXPort = 65536 }, "mx-port", "got 65536"},
		{"mx-port maximum", func(c *config.Config) { c.MXPort = 65535 }, "", ""},
		{"smarthost host:port", func(c *config.Config) { c.Smarthost = "smtp.example.net:587" }, "", ""},
		{"smarthost IPv6", func(c *config.Config) { c.Smarthost = "[2001:db8::25]:465" }, "", ""},
		{"smarthost without port", func(c *config.Config) { c.Smarthost = "smtp.example.net" }, "smarthost", `host:port, e.g. smtp.example.net:587, or empty for none, got "smtp.example.net"`},
		{"smarthost empty port", func(c *config.Config) { c.Smarthost = "smtp.example.net:" }, "smarthost", "host:port"},
		{"smarthost port zero", func(c *config.Config) { c.Smarthost = "smtp.example.net:0" }, "smarthost", "host:port"},
		{"smarthost without host", func(c *config.Config) { c.Smarthost = ":587" }, "smarthost", `":587"`},
		{"smarthost bad host", func(c *config.Config) { c.Smarthost = "smtp_relay:587" }, "smarthost", `"smtp_relay:587"`},
		{"smarthost-user without smarthost", func(c *config.Config) { c.SmarthostUser, c.SmarthostPassword = "u", "p" }, "smarthost-user", "smarthost is not"},
		{"smarthost-user without password", func(c *config.Config) { c.Smarthost, c.SmarthostUser = "smtp.example.net:587", "u" }, "smarthost-password", "must be set with smarthost-user"},
		{"smarthost-password without user", func(c *config.Config) { c.Smarthost, c.SmarthostPassword = "smtp.example.net:587", "p" }, "smarthost-user", "must be set with smarthost-password"},
		{"smarthost with user and password", func(c *config.Config) {
			c.Smarthost, c.SmarthostUser, c.SmarthostPassword = "smtp.example.net:587", "u", "p"
		}, "", ""},
		{"smarthost-tls implicit", func(c *config.Config) { c.SmarthostTLS = "implicit" }, "", ""},
		{"smarthost-tls none", func(c *config.Config) { c.SmarthostTLS = "none" }, "smarthost-tls", `starttls or implicit, got "none"`},
		{"smarthost-tls empty", func(c *config.Config) { c.SmarthostTLS = "" }, "smarthost-tls", "starttls or implicit"},
		{"smarthost-domains", func(c *config.Config) {
			c.Smarthost, c.SmarthostDomains = "smtp.example.net:587", []string{"example.com", "xn--bcher-kva.example"}
		}, "", ""},
		{"smarthost-domains without smarthost", func(c *config.Config) { c.SmarthostDomains = []string{"example.com"} }, "smarthost-domains", "smarthost is not"},
		{"smarthost-domains bad name", func(c *config.Config) {
			c.Smarthost, c.SmarthostDomains = "smtp.example.net:587", []string{"example.com", "bad domain"}
		}, "smarthost-domains", `"bad domain" is not a domain name`},
		{"smarthost-domains empty item", func(c *config.Config) {
			c.Smarthost, c.SmarthostDomains = "smtp.example.net:587", []string{"example.com", ""}
		}, "smarthost-domains", `"" is not a domain name`},
		{"sender-policy verified", func(c *config.Config) { c.SenderPolicy = "verified" }, "", ""},
		{"sender-policy any", func(c *config.Config) { c.SenderPolicy = "any" }, "", ""},
		{"sender-policy unknown", func(c *config.Config) { c.SenderPolicy = "strict" }, "sender-policy", `registered, verified or any, got "strict"`},
		{"sender-policy upper case", func(c *config.Config) { c.SenderPolicy = "Any" }, "sender-policy", `"Any"`},
		{"return-path-domain", func(c *config.Config) { c.ReturnPathDomain = "bounces.example.com" }, "", ""},
		{"return-path-domain with trailing dot", func(c *config.Config) { c.ReturnPathDomain = "bounces.example.com." }, "", ""},
		{"return-path-domain an address", func(c *config.Config) { c.ReturnPathDomain = "bounce@example.com" }, "return-path-domain", `must be a domain name, e.g. bounces.example.com, or empty, got "bounce@example.com"`},
		{"return-path-domain label too long", func(c *config.Config) { c.ReturnPathDomain = strings.Repeat("a", 64) + ".example" }, "return-path-domain", "must be a domain name"},
		{"return-path-domain leading hyphen", func(c *config.Config) { c.ReturnPathDomain = "-bounces.example.com" }, "return-path-domain", "must be a domain name"},
		{"return-path-domain empty label", func(c *config.Config) { c.ReturnPathDomain = "bounces..example.com" }, "return-path-domain", "must be a domain name"},
		{"max-lifetime zero", func(c *config.Config) { c.MaxLifetime = 0 }, "max-lifetime", "must be positive"},
		{"retention-interval zero", func(c *config.Config) { c.RetentionInterval = 0 }, "retention-interval", "must be positive"},
		{"retry-base negative", func(c *config.Config) { c.RetryBase = -time.Minute }, "retry-base", "must be positive"},
		{"retry-max-interval zero", func(c *config.Config) { c.RetryMaxInterval = 0 }, "retry-max-interval", "must be positive"},
		{"retry-max-interval below retry-base", func(c *config.Config) { c.RetryBase, c.RetryMaxInterval = time.Hour, 30*time.Minute }, "retry-max-interval", "at least retry-base (1h0m0s), got 30m0s"},
		{"retry-max-interval equal to retry-base", func(c *config.Config) { c.RetryBase, c.RetryMaxInterval = time.Hour, time.Hour }, "", ""},
		{"relay-workers zero", func(c *config.Config) { c.RelayWorkers = 0 }, "relay-workers", "at least 1, got 0"},
		{"relay-per-server zero", func(c *config.Config) { c.RelayPerServer = 0 }, "relay-per-server", "at least 1"},
		{"relay-per-domain negative", func(c *config.Config) { c.RelayPerDomain = -1 }, "relay-per-domain", "at least 1, got -1"},
		{"relay limits of 1", func(c *config.Config) { c.RelayWorkers, c.RelayPerServer, c.RelayPerDomain = 1, 1, 1 }, "", ""},
		{"tls-fallback off", func(c *config.Config) { c.TLSFallback = false }, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			tc.mutate(&c)
			err := c.Validate()
			if tc.setting == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantErr(t, err, "config: "+tc.setting+": ", tc.detail)
		})
	}
}

// smarthost-domains is a comma-separated list: spaces around items and a
// trailing dot go, names are lower-cased, and each layer replaces the
// list of the one below rather than adding to it.
func TestSmarthostDomains(t *testing.T) {
	path := writeFile(t, "smarthost = smtp.example.net:587\nsmarthost-domains = a.example, B.Example.\n")
	c := mustLoad(t, nil, env{"POSTERN_CONFIG": path})
	if want := []string{"a.example", "b.example"}; !reflect.DeepEqual(c.SmarthostDomains, want) {
		t.Errorf("from the file: %q, want %q", c.SmarthostDomains, want)
	}
	c = mustLoad(t, nil, env{"POSTERN_CONFIG": path, "POSTERN_SMARTHOST_DOMAINS": "c.example"})
	if want := []string{"c.example"}; !reflect.DeepEqual(c.SmarthostDomains, want) {
		t.Errorf("the environment over the file: %q, want %q", c.SmarthostDomains, want)
	}
	c = mustLoad(t, []string{"-smarthost-domains", "d.example,e.example"}, env{"POSTERN_CONFIG": path, "POSTERN_SMARTHOST_DOMAINS": "c.example"})
	if want := []string{"d.example", "e.example"}; !reflect.DeepEqual(c.SmarthostDomains, want) {
		t.Errorf("a flag over the environment: %q, want %q", c.SmarthostDomains, want)
	}
	// Empty means every domain goes through the smarthost.
	c = mustLoad(t, nil, env{"POSTERN_CONFIG": path, "POSTERN_SMARTHOST_DOMAINS": " "})
	if c.SmarthostDomains != nil {
		t.Errorf("empty in the environment: %q, want none", c.SmarthostDomains)
	}
	_, err := load(t, nil, env{"POSTERN_CONFIG": path, "POSTERN_SMARTHOST_DOMAINS": "a.example,,b.example"})
	wantErr(t, err, "config: smarthost-domains: ", `"" is not a domain name`)
	_, err = load(t, nil, env{"POSTERN_SMARTHOST_DOMAINS": "a.example"})
	wantErr(t, err, "config: smarthost-domains: ", "smarthost is not")
}

// The smarthost password never appears in an error, which may be logged.
func TestSmarthostPasswordNotInErrors(t *testing.T) {
	const secret = "s3cret-pa55word"
	_, err := load(t, nil, env{"POSTERN_SMARTHOST_PASSWORD": secret})
	wantErr(t, err, "config: smarthost-user: ", "must be set with smarthost-password")
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q shows the password", err)
	}
	if flag := config.FlagSet("x", &config.Config{}).Lookup("smarthost-password"); !strings.Contains(flag.Usage, "POSTERN_SMARTHOST_PASSWORD") {
		t.Errorf("smarthost-password's usage does not recommend the environment variable: %q", flag.Usage)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := valid(t)
	c.MaxRecipients, c.LogFormat, c.DataDir = 0, "yaml", ""
	wantErr(t, c.Validate(), "config: max-recipients: ", "config: log-format: ", "config: data: ")
}

func TestSettings(t *testing.T) {
	settings := config.Settings()
	fs := config.FlagSet("x", &config.Config{})
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(settings) != len(flags) {
		t.Fatalf("Settings() has %d entries, the flag set %d flags", len(settings), len(flags))
	}
	envName := regexp.MustCompile(`^POSTERN_[A-Z0-9_]+$`)
	for i, f := range flags {
		s := settings[i]
		if s.Name != f.Name || s.Default != f.DefValue || s.Usage != f.Usage {
			t.Errorf("setting %d = %+v, flag %q default %q usage %q", i, s, f.Name, f.DefValue, f.Usage)
		}
		want := "POSTERN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if s.Env != want || !envName.MatchString(s.Env) || config.EnvName(f.Name) != want {
			t.Errorf("setting %s: env %q, want %q", s.Name, s.Env, want)
		}
		if s.Usage == "" {
			t.Errorf("setting %s has no usage text", s.Name)
		}
	}
	for _, name := range []string{"config", "data", "hostname", "smtp-addr", "smtps-addr", "tls-cert", "tls-key", "max-recipients", "shutdown-timeout",
		"dns", "mx-port", "smarthost", "smarthost-user", "smarthost-password", "smarthost-tls", "smarthost-domains",
		"sender-policy", "return-path-domain", "max-lifetime", "retry-base", "retry-max-interval",
		"relay-workers", "relay-per-server", "relay-per-domain", "tls-fallback", "api-addr", "api-tls", "public-url", "metrics-addr",
		"retention-interval"} {
		if fs.Lookup(name) == nil {
			t.Errorf("no setting %q", name)
		}
	}
}

// Every setting can be set from the environment, under its Env name.
func TestEverySettingFromEnv(t *testing.T) {
	values := map[string]string{
		"data": "/srv/p", "hostname": "mx.example.org", "smtp-addr": ":587", "smtps-addr": ":465",
		"tls-cert": "c.pem", "tls-key": "k.pem", "max-message-size": "2048", "max-recipients": "3",
		"max-line-length": "2000", "max-sessions": "4", "max-inflight-bytes": "5242880", "command-timeout": "1s", "write-timeout": "2s",
		"session-timeout": "3s", "allow-plaintext-auth": "true", "auth-max-failures": "9",
		"auth-failure-window": "4s", "shutdown-timeout": "5s", "log-level": "debug", "log-format": "json",
		"dns": "127.0.0.1:5353", "mx-port": "2525", "smarthost": "smtp.example.net:465",
		"smarthost-user": "relay-user", "smarthost-password": "relay secret", "smarthost-tls": "implicit",
		"smarthost-domains": " Example.COM, example.org. ", "sender-policy": "verified",
		"return-path-domain": "bounces.example.org", "max-lifetime": "72h", "retry-base": "1m",
		"retry-max-interval": "2h", "relay-workers": "8", "relay-per-server": "4", "relay-per-domain": "2",
		"tls-fallback": "false", "api-addr": ":8443", "api-tls": "true", "public-url": "https://postern.example.org",
		"metrics-addr": "10.0.0.5:9100", "pprof-addr": "127.0.0.1:6060", "retention-interval": "15m", "allow-private-destinations": "true",
		"max-sessions-per-ip": "6", "preauth-timeout": "7s",
		"max-domains-per-account": "8", "max-servers-per-account": "9", "max-tokens-per-server": "10",
		"domain-reverify-days": "3", "mta-sts-port": "8443", "dane": "off",
		"webhook-retry-schedule": "1s,2s", "webhook-allow-private": "true",
		"inbound-addr": ":2526", "inbound-domain": "inbound.example.org", "sending-ips": "192.0.2.7, 2001:db8::7",
		"store": "postgres://postern@db.example.org/postern", "node-name": "node-2",
		"console-addr": ":8444", "console-tls": "true",
	}
	e := env{}
	for _, s := range config.Settings() {
		if s.Name == "config" {
			continue
		}
		v, ok := values[s.Name]
		if !ok {
			t.Fatalf("setting %q has no test value: add it here", s.Name)
		}
		e[s.Env] = v
	}
	c := mustLoad(t, nil, e)
	want := config.Config{
		DataDir: "/srv/p", Hostname: "mx.example.org", SMTPAddr: ":587", SMTPSAddr: ":465",
		TLSCert: "c.pem", TLSKey: "k.pem", MaxMessageSize: 2048, MaxRecipients: 3,
		MaxLineLength: 2000, MaxSessions: 4, MaxInflightBytes: 5 << 20, CommandTimeout: time.Second, WriteTimeout: 2 * time.Second,
		SessionTimeout: 3 * time.Second, AllowPlaintextAuth: true, AuthMaxFailures: 9,
		AuthFailureWindow: 4 * time.Second, ShutdownTimeout: 5 * time.Second, LogLevel: "debug", LogFormat: "json",
		DNS: "127.0.0.1:5353", MXPort: 2525, Smarthost: "smtp.example.net:465",
		SmarthostUser: "relay-user", SmarthostPassword: "relay secret", SmarthostTLS: "implicit",
		SmarthostDomains: []string{"example.com", "example.org"}, SenderPolicy: "verified",
		APIAddr: ":8443", APITLS: true, PublicURL: "https://postern.example.org", MetricsAddr: "10.0.0.5:9100",
		PprofAddr: "127.0.0.1:6060", ConsoleAddr: ":8444", ConsoleTLS: true,
		ReturnPathDomain: "bounces.example.org", MaxLifetime: 72 * time.Hour, RetryBase: time.Minute,
		RetryMaxInterval: 2 * time.Hour, RelayWorkers: 8, RelayPerServer: 4, RelayPerDomain: 2,
		TLSFallback: false, RetentionInterval: 15 * time.Minute, AllowPrivateDestinations: true,
		MaxSessionsPerIP: 6, PreauthTimeout: 7 * time.Second,
		MaxDomainsPerAccount: 8, MaxServersPerAccount: 9, MaxTokensPerServer: 10,
		DomainReverifyDays: 3, MTASTSPort: 8443, DANE: "off",
		WebhookRetrySchedule: "1s,2s", WebhookAllowPrivate: true,
		InboundAddr: ":2526", InboundDomain: "inbound.example.org", SendingIPs: []string{"192.0.2.7", "2001:db8::7"},
		Store: "postgres://postern@db.example.org/postern", NodeName: "node-2",
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("from the environment:\n got %+v\nwant %+v", *c, want)
	}
}

func TestTLSConfigSelfSigned(t *testing.T) {
	dir := t.TempDir()
	c := &config.Config{DataDir: dir, Hostname: "mx.test.example"}
	tc, err := c.TLSConfig()
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	if len(tc.Certificates) != 1 || tc.MinVersion < tls.VersionTLS12 {
		t.Fatalf("TLSConfig: %d certificates, MinVersion %x", len(tc.Certificates), tc.MinVersion)
	}
	certPath, keyPath := filepath.Join(dir, config.SelfSignedCert), filepath.Join(dir, config.SelfSignedKey)
	if config.SelfSignedCert != "tls-cert.pem" || config.SelfSignedKey != "tls-key.pem" {
		t.Errorf("file names %q, %q; want tls-cert.pem, tls-key.pem", config.SelfSignedCert, config.SelfSignedKey)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("key file mode %o, want 600", mode)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf := tc.Certificates[0].Leaf
	if leaf == nil {
		t.Fatal("certificate has no parsed leaf")
	}
	if err := leaf.VerifyHostname("mx.test.example"); err != nil {
		t.Errorf("certificate not for the hostname: %v", err)
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Errorf("certificate not for localhost: %v", err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("certificate not for 127.0.0.1: %v", err)
	}

	// A second call reuses the certificate.
	tc2, err := c.TLSConfig()
	if err != nil {
		t.Fatalf("second TLSConfig: %v", err)
	}
	certPEM2, _ := os.ReadFile(certPath)
	keyPEM2, _ := os.ReadFile(keyPath)
	if !bytes.Equal(certPEM, certPEM2) || !bytes.Equal(keyPEM, keyPEM2) {
		t.Error("the second call rewrote the certificate or key")
	}
	if !bytes.Equal(tc.Certificates[0].Certificate[0], tc2.Certificates[0].Certificate[0]) {
		t.Error("the second call returned a different certificate")
	}
}

func TestTLSConfigConfigured(t *testing.T) {
	// Make two self-signed pairs to configure explicitly.
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := (&config.Config{DataDir: dirA, Hostname: "a.example"}).TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&config.Config{DataDir: dirB, Hostname: "b.example"}).TLSConfig(); err != nil {
		t.Fatal(err)
	}
	certA, keyA := filepath.Join(dirA, config.SelfSignedCert), filepath.Join(dirA, config.SelfSignedKey)
	keyB := filepath.Join(dirB, config.SelfSignedKey)

	data := t.TempDir()
	c := &config.Config{DataDir: data, Hostname: "mx.example", TLSCert: certA, TLSKey: keyA}
	tc, err := c.TLSConfig()
	if err != nil {
		t.Fatalf("TLSConfig with a configured pair: %v", err)
	}
	if !bytes.Equal(tc.Certificates[0].Certificate[0], a.Certificates[0].Certificate[0]) {
		t.Error("the configured certificate was not the one loaded")
	}
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Errorf("a self-signed certificate was generated although one is configured: %v", entries)
	}

	c.TLSKey = keyB
	_, err = c.TLSConfig()
	wantErr(t, err, "tls-cert/tls-key")

	c.TLSCert, c.TLSKey = filepath.Join(data, "missing.pem"), keyA
	_, err = c.TLSConfig()
	wantErr(t, err, "tls-cert/tls-key", "missing.pem")
}

func TestTLSConfigNoDataDir(t *testing.T) {
	c := &config.Config{DataDir: filepath.Join(t.TempDir(), "absent"), Hostname: "mx.example"}
	if _, err := c.TLSConfig(); err == nil {
		t.Error("TLSConfig wrote into a data directory that does not exist")
	}
}

// settingLine is a "name = value" line of the example file, commented out
// ("#name = value") or not.
var settingLine = regexp.MustCompile(`^(#?)([a-z][a-z0-9-]*)\s*=(.*)$`)

// TestExampleFile checks config/postern.conf.example, the reference
// configuration file: it loads; it documents every setting, once, with its
// environment variable; and the defaults it shows are the defaults in code.
func TestExampleFile(t *testing.T) {
	const path = "postern.conf.example"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// (a) It loads as it is.
	if _, err := load(t, []string{"-config", path}, env{}); err != nil {
		t.Fatalf("the example does not load: %v", err)
	}

	// (b) Every setting has one "name = value" line, preceded by comments
	// naming its environment variable.
	lines := strings.Split(string(raw), "\n")
	seen := map[string]int{} // name → line number
	uncommented := make([]string, 0, len(lines))
	var comments []string // since the previous setting line
	for i, line := range lines {
		m := settingLine.FindStringSubmatch(line)
		if m == nil {
			uncommented = append(uncommented, line)
			if strings.HasPrefix(line, "#") {
				comments = append(comments, line)
			}
			continue
		}
		name := m[2]
		if prev, dup := seen[name]; dup {
			t.Errorf("line %d: %s already shown on line %d", i+1, name, prev)
		}
		seen[name] = i + 1
		doc := strings.Join(comments, "\n")
		if !strings.Contains(doc, name) || !strings.Contains(doc, config.EnvName(name)) {
			t.Errorf("line %d: %s is not documented above its line with its name and %s", i+1, name, config.EnvName(name))
		}
		comments = nil
		uncommented = append(uncommented, name+" ="+m[3])
	}
	settings := config.Settings()
	known := map[string]bool{}
	for _, s := range settings {
		known[s.Name] = true
		if s.Name == "config" {
			continue
		}
		if _, ok := seen[s.Name]; !ok {
			t.Errorf("setting %s (%s) is missing from %s", s.Name, s.Env, path)
		}
	}
	for name, line := range seen {
		if !known[name] || name == "config" {
			t.Errorf("line %d: %q is not a setting", line, name)
		}
	}

	// With every line uncommented, the file still loads, and what it
	// shows as defaults are the defaults (but hostname and node-name,
	// whose default is the machine's name, and store, whose default is
	// empty: their lines show examples).
	full := filepath.Join(t.TempDir(), "all.conf")
	if err := os.WriteFile(full, []byte(strings.Join(uncommented, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := load(t, []string{"-config", full}, env{})
	if err != nil {
		t.Fatalf("the example with every setting uncommented does not load: %v", err)
	}
	want := mustLoad(t, nil, env{})
	got.ConfigFile, got.Hostname, got.NodeName, got.Store = "", want.Hostname, want.NodeName, want.Store
	if !reflect.DeepEqual(*got, *want) {
		t.Errorf("the defaults the example shows are not the defaults in code:\n got %+v\nwant %+v", *got, *want)
	}
}

// TestExampleFileSetsWhatItSays loads the example with every setting line
// uncommented into a Config whose every field was first set to something
// else, as if the defaults in code were different: each field must then
// hold exactly the value its line shows, as the same value given as a flag
// would set it. So no line of the example is ignored or read otherwise
// than it says, including hostname, whose line shows an example rather
// than the default.
func TestExampleFileSetsWhatItSays(t *testing.T) {
	const path = "postern.conf.example"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		n           int
		name, value string
	}
	var shown []line
	var uncommented []string
	for i, text := range strings.Split(string(raw), "\n") {
		m := settingLine.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		// The value as the file parser reads it: trimmed, quotes removed.
		v := strings.TrimSpace(m[3])
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		shown = append(shown, line{i + 1, m[2], v})
		uncommented = append(uncommented, m[2]+" ="+m[3])
	}
	if len(shown) == 0 {
		t.Fatalf("%s shows no setting", path)
	}
	full := filepath.Join(t.TempDir(), "all.conf")
	if err := os.WriteFile(full, []byte(strings.Join(uncommented, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	var c config.Config
	fs := config.FlagSet("serve", &c)
	fs.SetOutput(new(bytes.Buffer))
	if err := fs.Parse([]string{"-config", full}); err != nil {
		t.Fatal(err)
	}
	// Every field but ConfigFile gets a value no line shows.
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		if name == "ConfigFile" {
			continue
		}
		switch f.Kind() {
		case reflect.String:
			f.SetString("scrambled")
		case reflect.Int, reflect.Int64: // time.Duration too
			f.SetInt(7777)
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"scrambled.example"}))
		default:
			t.Fatalf("Config.%s is a %s: teach this test to change it", name, f.Kind())
		}
	}
	if err := config.Load(fs, &c, env{}.lookup); err != nil {
		t.Fatalf("the example with every setting uncommented does not load: %v", err)
	}
	for _, l := range shown {
		var ref config.Config
		rfs := config.FlagSet("ref", &ref)
		if err := rfs.Set(l.name, l.value); err != nil {
			t.Errorf("%s:%d: %s = %q is not a valid value: %v", path, l.n, l.name, l.value, err)
			continue
		}
		want := rfs.Lookup(l.name).Value.String()
		if got := fs.Lookup(l.name).Value.String(); got != want {
			t.Errorf("%s:%d: %s = %q, uncommented, sets %q; want %q", path, l.n, l.name, l.value, got, want)
		}
	}
	// And nothing was left as it was before loading: every field is
	// some line's.
	if s := fmt.Sprintf("%+v", c); strings.Contains(s, "scrambled") || strings.Contains(s, "7777") {
		t.Errorf("a setting the example does not set: %s", s)
	}
	if c.Hostname != "mail.example.com" {
		t.Errorf("hostname = %q, want the example's mail.example.com", c.Hostname)
	}
}

// TestSystemdUnit checks config/postern.service against the rest: its
// ExecStart is a postern serve command line that parses, with the
// configuration file where the unit's install instructions put the
// example, and every variable it names is a setting's.
func TestSystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("postern.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	var exec []string
	for _, line := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
	}
	if len(exec) < 2 || filepath.Base(exec[0]) != "postern" || exec[1] != "serve" {
		t.Fatalf("ExecStart %q is not postern serve", exec)
	}
	var c config.Config
	fs := config.FlagSet("serve", &c)
	fs.SetOutput(new(bytes.Buffer))
	if err := fs.Parse(exec[2:]); err != nil || fs.NArg() > 0 {
		t.Fatalf("ExecStart's flags %q: %v, left %q", exec[2:], err, fs.Args())
	}
	if c.ConfigFile == "" || !strings.Contains(unit, "config/postern.conf.example "+c.ConfigFile+"\n") {
		t.Errorf("ExecStart reads %q, which the unit's instructions do not install the example as", c.ConfigFile)
	}
	if !strings.Contains(unit, "ReadWritePaths="+c.DataDir+"\n") || !strings.Contains(unit, "StateDirectory="+filepath.Base(c.DataDir)+"\n") {
		t.Errorf("the data directory %q is not the unit's writable state directory", c.DataDir)
	}
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Env] = true
	}
	for _, m := range regexp.MustCompile(`POSTERN_[A-Z0-9_]+`).FindAllString(unit, -1) {
		if !known[m] {
			t.Errorf("the unit names %s, which is no setting's variable", m)
		}
	}
}

func TestAPIURL(t *testing.T) {
	for _, tc := range []struct {
		addr, listened, public string
		tls                    bool
		want                   string
	}{
		{"127.0.0.1:8080", "", "", false, "http://127.0.0.1:8080"},
		{"127.0.0.1:0", "127.0.0.1:43210", "", false, "http://127.0.0.1:43210"},
		{":8443", "[::]:8443", "", true, "https://127.0.0.1:8443"},
		{"0.0.0.0:80", "", "", false, "http://127.0.0.1:80"},
		{"postern.internal:8080", "", "", true, "https://postern.internal:8080"},
		{"[::1]:8080", "", "", false, "http://[::1]:8080"},
		{":8080", "", "https://postern.example.com/", false, "https://postern.example.com"},
	} {
		c := config.Config{APIAddr: tc.addr, APITLS: tc.tls, PublicURL: tc.public}
		if got := c.APIURL(tc.listened); got != tc.want {
			t.Errorf("APIURL(%+v, %q) = %q, want %q", c, tc.listened, got, tc.want)
		}
	}
}

// docs/settings.md is what "postern settings -markdown" prints from the
// code's settings: a setting added, removed or reworded makes it stale,
// and this test says how to write it anew.
func TestSettingsMarkdownCurrent(t *testing.T) {
	got, err := os.ReadFile(filepath.Join("..", "docs", "settings.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := config.SettingsMarkdown(); string(got) != want {
		t.Fatalf("docs/settings.md is stale; write it anew with:\n\n\tgo run ./cmd/postern settings -markdown > docs/settings.md")
	}
	for _, s := range config.Settings() {
		if !strings.Contains(string(got), "| `"+s.Name+"` | `"+s.Env+"` |") {
			t.Errorf("docs/settings.md has no row for %s", s.Name)
		}
	}
}
