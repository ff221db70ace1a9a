package api

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"net/netip"
	"net/url"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/store"
)

// Postmark's ErrorCodes that the API core answers with; each area's file
// defines its own.
const (
	codeBadToken      = 10
	codeNotFound      = 12
	codeInvalidJSON   = 402
	codeJSONRequired  = 409
	codeInvalidField  = 403
	codeRequestTooBig = 413 // not Postmark's: Postmark documents only the HTTP status
)

// Config is the API's configuration.
type Config struct {
	Store    store.Backend
	Auth     *auth.Authenticator
	Resolver dkim.TXTResolver // verifyDkim's lookups; nil: the system's resolver
	// GenerateKeys makes a new domain's DKIM keys (POST /domains and
	// rotatedkim): cmd/postern passes relay's generator, which the api
	// package may not import. Nil: those endpoints answer 500.
	GenerateKeys func(domain string) ([]store.DKIMKey, error)
	// PublicURL is where people reach this API (for ServerLink); default
	// http://127.0.0.1:8080.
	PublicURL string
	// BackupDir is where GET /backup writes the store's copy before
	// sending it: a directory with room for one (the data directory).
	// Empty: the system's temporary directory.
	BackupDir string
	// TLSReport returns the TLS report (RFC 8460) to domain for day as it
	// would be sent, counts not yet stored included, for GET /tlsrpt.
	// Nil: there is none.
	TLSReport func(day time.Time, domain string) (report any, found bool, err error)
	// Sending (POST /email, /email/batch) applies the rules of SMTP:
	// SenderPolicy, MaxRecipients (default 50), MaxMessageBytes (default
	// 10 MiB), and private address literals only with
	// AllowPrivateDestinations. Hostname names Postern in the Message-ID
	// and Received field (default localhost). Accepted, if set, is told
	// of each message filed (the relay's wake-up).
	SenderPolicy             store.SenderPolicy
	MaxRecipients            int
	MaxMessageBytes          int
	AllowPrivateDestinations bool
	Hostname                 string
	Accepted                 func(serverID int64, messageID string)
	// Foreground, when set, is told when a sending request starts and,
	// by the function it returns, when it ends: the relay's signing waits
	// while one is in progress (see package cpushare).
	Foreground func() (done func())
	// CheckWebhookURL, if set, refuses a webhook URL Postern must not
	// call (one at a private address, unless the operator allows them).
	CheckWebhookURL func(ctx context.Context, u *url.URL) error
	// DMARC: InboundDomain takes reports (dmarc+<token>@InboundDomain;
	// default Hostname); SendingIPs are Postern's own addresses; PTR
	// names a source address ("" for none; nil: no names).
	InboundDomain string
	SendingIPs    []netip.Addr
	PTR           func(ip string) string
	// ConsoleURL is where people reach the console, for one-time sign-in
	// links; default http://127.0.0.1:8081.
	ConsoleURL string
	// CNAME looks a Return-Path domain's CNAME up (verifyReturnPath); nil:
	// never verified.
	CNAME func(ctx context.Context, name string) (string, error)
	// Unsubscribed, if set, is told of each unsubscribe (the webhook
	// dispatcher's wake-up).
	Unsubscribed func()
	// Metrics, if set, gets postern_api_emails_total.
	Metrics prometheus.Registerer
	// MaxBodyBytes bounds request bodies; default 1 MiB.
	MaxBodyBytes int64
	Logger       *slog.Logger     // nil: discard
	Now          func() time.Time // nil: time.Now
}

// API serves Postern's HTTP API.
type API struct {
	cfg    Config
	mux    *routeMux
	emails *prometheus.CounterVec // server, result; nil without Metrics
}

// routeMux is a ServeMux that remembers the patterns registered on it, so
// that tests can check that every endpoint is in their tables.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// New returns the API for cfg.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Auth == nil {
		return nil, errors.New("api: Config.Store and Config.Auth are required")
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://127.0.0.1:8080"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = 50
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 10 << 20
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	if cfg.ConsoleURL == "" {
		cfg.ConsoleURL = "http://127.0.0.1:8081"
	}
	if cfg.InboundDomain == "" {
		cfg.InboundDomain = cfg.Hostname
	}
	a := &API{cfg: cfg, mux: &routeMux{ServeMux: http.NewServeMux()}}
	if cfg.Metrics != nil {
		a.emails = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postern_api_emails_total",
			Help: "Messages sent with POST /email and /email/batch, by server ID and result: accepted (filed), refused (a Postmark error: invalid, inactive recipient, sender, limits), failed (the store failed).",
		}, []string{"server", "result"})
		if err := cfg.Metrics.Register(a.emails); err != nil {
			return nil, err
		}
	}
	a.registerAccounts()
	a.registerServers()
	a.registerTransfer()
	a.registerDomains()
	a.registerMessages()
	a.registerStats()
	a.registerBounces()
	a.registerBackup()
	a.registerTLSReports()
	a.registerEmail()
	a.registerWebhooks()
	a.registerStreams()
	a.registerDMARC()
	a.registerUsers()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "No such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// Error is a Postmark error body.
type Error struct {
	ErrorCode int
	Message   string
}

// apiError is an error answer: the HTTP status and Postmark's body.
type apiError struct {
	status int
	body   Error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %d %s", e.status, e.body.ErrorCode, e.body.Message)
}

func errorf(status, code int, format string, args ...any) *apiError {
	return &apiError{status: status, body: Error{ErrorCode: code, Message: fmt.Sprintf(format, args...)}}
}

// notFound is the answer for anything a principal may not see, whether
// it exists or not, so that no ID reveals another tenant's data.
func notFound(code int, what string) *apiError {
	return errorf(http.StatusNotFound, code, "%s was not found.", what)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, Error{ErrorCode: code, Message: msg})
}

// fail writes err: an *apiError as it is, anything else as a 500 whose
// cause goes to the log only.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		writeJSON(w, ae.status, ae.body)
		return
	}
	var capped *store.CapError
	if errors.As(err, &capped) {
		writeError(w, http.StatusUnprocessableEntity, codeInvalidField, fmt.Sprintf(
			"The limit of %d %s is reached (the operator's %s setting); delete one first.", capped.Limit, capped.What, capped.Setting))
		return
	}
	a.cfg.Logger.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, 0, "Internal server error; the operator's log has the details.")
}

// decode reads a JSON request body into v. Postmark's rules: a body needs
// a JSON content type (415, ErrorCode 409), must parse (422, 402), and
// unknown fields are ignored; bodies over MaxBodyBytes get 413.
func (a *API) decode(r *http.Request, v any) error {
	return a.decodeUpTo(r, v, a.cfg.MaxBodyBytes)
}

// decodeUpTo is decode with a bound of its own on the body.
func (a *API) decodeUpTo(r *http.Request, v any, limit int64) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, codeJSONRequired, "The request must have Content-Type: application/json.")
	}
	body := http.MaxBytesReader(nil, r.Body, limit)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, codeRequestTooBig, "The request body is larger than %d bytes.", limit)
		}
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return errorf(http.StatusUnprocessableEntity, codeInvalidJSON, "The request body is not valid JSON: %v", err)
	}
	return nil
}

// accountHandler serves a request with an account token.
type accountHandler func(w http.ResponseWriter, r *http.Request, p accountPrincipal) error

// accountPrincipal is who an account token speaks for.
type accountPrincipal struct {
	AccountID int64
	Role      store.Role
	Prefix    string // the token's prefix, to tell tokens apart in logs
}

// serverHandler serves a request with a server token.
type serverHandler func(w http.ResponseWriter, r *http.Request, srv store.Server) error

// account wraps h: the request must carry a valid account token.
func (a *API) account(h accountHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := a.cfg.Auth.Lookup(r.Header.Get("X-Postmark-Account-Token"))
		if err != nil || tok.Kind != store.KindAccount {
			if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
				a.fail(w, r, err)
				return
			}
			writeError(w, http.StatusUnauthorized, codeBadToken, "The X-Postmark-Account-Token header is missing or holds no valid account token.")
			return
		}
		if err := h(w, r, accountPrincipal{AccountID: tok.AccountID, Role: tok.Role, Prefix: tok.Prefix}); err != nil {
			a.fail(w, r, err)
		}
	}
}

// server wraps h: the request must carry a valid server token.
func (a *API) server(h serverHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, err := a.cfg.Auth.Lookup(r.Header.Get("X-Postmark-Server-Token"))
		if err != nil || tok.Kind != store.KindServer {
			if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
				a.fail(w, r, err)
				return
			}
			writeError(w, http.StatusUnauthorized, codeBadToken, "The X-Postmark-Server-Token header is missing or holds no valid server token.")
			return
		}
		srv, err := a.cfg.Store.Server(tok.ServerID)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusUnauthorized, codeBadToken, "The X-Postmark-Server-Token header is missing or holds no valid server token.")
			return
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if err := h(w, r, srv); err != nil {
			a.fail(w, r, err)
		}
	}
}

// paging reads Postmark's count and offset parameters: both required,
// count at most maxCount, count+offset at most maxTotal (when maxTotal is
// 0, offset at most maxOffset). code is the endpoint's query ErrorCode
// (600 servers, 700 messages, 1000 bounces). The bounds are checked
// without adding count and offset, which could overflow.
func paging(r *http.Request, code, maxCount, maxTotal int) (count, offset int, err error) {
	q := r.URL.Query()
	count, cerr := strconv.Atoi(q.Get("count"))
	offset, oerr := strconv.Atoi(q.Get("offset"))
	limit := maxOffset
	if maxTotal > 0 {
		limit = maxTotal - 1
	}
	switch {
	case errors.Is(cerr, strconv.ErrRange):
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "count must be between 1 and %d.", maxCount)
	case errors.Is(oerr, strconv.ErrRange):
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "offset must be between 0 and %d.", limit)
	case cerr != nil || oerr != nil:
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "The count and offset parameters are required whole numbers.")
	case count < 1 || count > maxCount:
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "count must be between 1 and %d.", maxCount)
	case offset < 0:
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "offset must not be negative.")
	case maxTotal > 0 && offset > maxTotal-count:
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "count + offset must not exceed %d.", maxTotal)
	case offset > maxOffset:
		return 0, 0, errorf(http.StatusUnprocessableEntity, code, "offset must be between 0 and %d.", maxOffset)
	}
	return count, offset, nil
}

// maxOffset bounds the offset of a listing that sets no total, so that
// offset+count stays far from overflowing.
const maxOffset = 1<<31 - 1

// pathID reads a numeric path parameter.
func pathID(r *http.Request, name string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	return id, err == nil && id > 0
}

// sentence is err's message as a sentence's start: capitalised (the
// store's errors start in lower case).
func sentence(err error) string {
	s := err.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
