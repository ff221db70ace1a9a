// Package console serves Postern's web console: people sign in, see the
// servers their role lets them see, and work on them, through the same
// store and rules as the HTTP API.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Throttle counts failed sign-ins per key (an email, an address) and
// shuts a key out for a while after too many: auth.Throttle, or
// auth.SharedThrottle on a backend several nodes share.
type Throttle interface {
	Blocked(key string) (bool, time.Time)
	Fail(key string) bool
}

// Config is the console's configuration.
type Config struct {
	Store    store.Backend
	Throttle Throttle
	// Resolver looks DKIM records up for "verify now"; nil: the
	// system's resolver.
	Resolver dkim.TXTResolver
	// SMTPAddr is the submission address shown in the swaks line of a
	// new token (host:port).
	SMTPAddr string
	// Secure: the console is served over TLS, so cookies are Secure.
	Secure bool
	Logger *slog.Logger     // nil: discard
	Now    func() time.Time // nil: time.Now
}

// Console is the console's HTTP handler.
type Console struct {
	cfg   Config
	mux   *routeMux
	pages map[string]*template.Template
}

// routeMux is a ServeMux that remembers its patterns, so that the access
// tests can check every route is in their matrix.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Routes lists the console's route patterns.
func (c *Console) Routes() []string { return append([]string(nil), c.mux.patterns...) }

// New returns the console for cfg.
func New(cfg Config) (*Console, error) {
	if cfg.Store == nil || cfg.Throttle == nil {
		return nil, errors.New("console: Config.Store and Config.Throttle are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SMTPAddr == "" {
		cfg.SMTPAddr = "127.0.0.1:2525"
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, mux: &routeMux{ServeMux: http.NewServeMux()}, pages: pages}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	c.mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
	c.registerSignIn()
	c.registerServers()
	c.registerServer()
	c.registerDomains()
	c.registerUsers()
	c.registerAccount()
	c.mux.HandleFunc("/", c.signedIn(func(w http.ResponseWriter, r *http.Request, v *viewer) error {
		return errNotFound
	}))
	return c, nil
}

// securityHeaders are sent with every answer: no inline script, no
// framing, no sniffing, no referrer leaving the console.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":        "DENY",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "same-origin",
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if c.cfg.Secure {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	c.mux.ServeHTTP(w, r)
}

// pageError is an answer other than the page: its status and what the
// person is told.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return fmt.Sprintf("%d %s", e.status, e.msg) }

// errNotFound is the one answer for what does not exist and for what
// the person may not see: the same page, so nothing tells them apart.
var errNotFound = &pageError{http.StatusNotFound, "There is no such page."}

func forbidden(format string, args ...any) error {
	return &pageError{http.StatusForbidden, fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return &pageError{http.StatusUnprocessableEntity, fmt.Sprintf(format, args...)}
}

// fail answers err: a pageError as its page, anything else as a 500
// whose cause goes to the log only.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	var pe *pageError
	if !errors.As(err, &pe) {
		if errors.Is(err, context.Canceled) {
			return
		}
		c.cfg.Logger.Error("console: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		pe = &pageError{http.StatusInternalServerError, "Something went wrong on our side; it has been logged. Try again."}
	}
	c.render(w, v, pe.status, "error", "Error", pe.msg)
}

// pathID reads a numeric path value.
func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil && id > 0
}
