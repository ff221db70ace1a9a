package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// The servers API's ErrorCodes (Postmark's).
const (
	codeServerQuery     = 600
	codeServerNotFound  = 601
	codeDuplicateServer = 603
	codeNoDeleteAccess  = 604
	codeBadWebhookURL   = 606
	codeBadColor        = 607
	codeBadServerName   = 608
	codeBadDeliveryType = 613
)

// Paging limits of GET /servers, as for Postmark's other listings.
const (
	maxServersCount = 500
	maxServersTotal = 10000
)

var trackLinks = []string{store.TrackLinksNone, store.TrackLinksHtmlAndText, store.TrackLinksHtmlOnly, store.TrackLinksTextOnly}

// canonical returns the member of set equal to v regardless of case.
func canonical(set []string, v string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(s, strings.TrimSpace(v)) {
			return s, true
		}
	}
	return "", false
}

// Server is the Server object of Postmark's API, plus Pinned.
type Server struct {
	ID                         int64
	Name                       string
	ApiTokens                  []string
	ServerLink                 string
	Color                      string
	SmtpApiActivated           bool
	RawEmailEnabled            bool
	DeliveryType               string
	InboundAddress             string
	InboundHash                string
	InboundDomain              string
	InboundSpamThreshold       int
	InboundHookUrl             string
	BounceHookUrl              string
	OpenHookUrl                string
	DeliveryHookUrl            string
	ClickHookUrl               string
	PostFirstOpenOnly          bool
	TrackOpens                 bool
	TrackLinks                 string
	IncludeBounceContentInHook bool
	EnableSmtpApiErrorHooks    bool
	Pinned                     bool
	// Postern's own: the server's limits (0: none) and retention.
	RateLimitPerMinute int
	DailyQuota         int
	RetentionDays      int
}

// ServerList is the answer of GET /servers.
type ServerList struct {
	TotalCount int
	Servers    []Server
}

// serverRequest is the body of POST /servers, PUT /servers/{id} and PUT
// /server: a field left out keeps its value (its default, at creation).
type serverRequest struct {
	Name                       *string
	Color                      *string
	SmtpApiActivated           *bool
	RawEmailEnabled            *bool
	DeliveryType               *string
	InboundDomain              *string
	InboundSpamThreshold       *int
	InboundHookUrl             *string
	BounceHookUrl              *string
	OpenHookUrl                *string
	DeliveryHookUrl            *string
	ClickHookUrl               *string
	PostFirstOpenOnly          *bool
	TrackOpens                 *bool
	TrackLinks                 *string
	IncludeBounceContentInHook *bool
	EnableSmtpApiErrorHooks    *bool
	Pinned                     *bool
	RateLimitPerMinute         *int
	DailyQuota                 *int
	RetentionDays              *int
}

// Bounds of the limits and retention.
const (
	// maxRateLimit bounds RateLimitPerMinute: each check counts up to the
	// limit's number of index keys.
	maxRateLimit  = 100000
	maxDailyQuota = 100000000
)

// operatorFields lists the fields of req that would change srv and that a
// server token may not change: a client holding its server's token must
// not lift its own limits, lengthen what the installation keeps, or turn
// SMTP back on after the account turned it off. Sent with the value they
// have, as a client that PUTs back what it GOT does, they are accepted.
func (req *serverRequest) operatorFields(srv store.Server) []string {
	var changed []string
	for _, f := range []struct {
		name    string
		v       *int
		current int
	}{
		{"RateLimitPerMinute", req.RateLimitPerMinute, srv.RateLimitPerMinute},
		{"DailyQuota", req.DailyQuota, srv.DailyQuota},
		{"RetentionDays", req.RetentionDays, srv.Retention()},
	} {
		if f.v != nil && *f.v != f.current {
			changed = append(changed, f.name)
		}
	}
	if req.SmtpApiActivated != nil && *req.SmtpApiActivated != srv.SmtpApiActivated {
		changed = append(changed, "SmtpApiActivated")
	}
	return changed
}

func unprocessable(code int, format string, args ...any) *apiError {
	return errorf(http.StatusUnprocessableEntity, code, format, args...)
}

func serverNotFound() *apiError { return notFound(codeServerNotFound, "Server") }

// apply validates req and applies it to srv. creating says whether srv is
// new (DeliveryType may be set only then).
func (req *serverRequest) apply(srv *store.Server, creating bool) error {
	if req.Name != nil {
		name, err := store.ServerName(*req.Name)
		if err != nil {
			return unprocessable(codeBadServerName, "%s.", sentence(err))
		}
		srv.Name = name
	} else if creating {
		return unprocessable(codeBadServerName, "The server's Name is required.")
	}
	if req.Color != nil {
		c, ok := store.ServerColor(*req.Color)
		if !ok {
			return unprocessable(codeBadColor, "Color %q is not one of %s.", *req.Color, strings.Join(store.ServerColors, ", "))
		}
		srv.Color = c
	}
	if req.DeliveryType != nil {
		dt, ok := canonical([]string{store.DeliveryLive, store.DeliverySandbox}, *req.DeliveryType)
		switch {
		case !ok:
			return unprocessable(codeBadDeliveryType, "DeliveryType %q is neither Live nor Sandbox.", *req.DeliveryType)
		case !creating && dt != srv.DeliveryType:
			return unprocessable(codeBadDeliveryType, "DeliveryType is set when a server is created and cannot change (this server is %s).", srv.DeliveryType)
		}
		srv.DeliveryType = dt
	}
	if req.TrackLinks != nil {
		tl, ok := canonical(trackLinks, *req.TrackLinks)
		if !ok {
			return unprocessable(codeInvalidField, "TrackLinks %q is not one of %s.", *req.TrackLinks, strings.Join(trackLinks, ", "))
		}
		srv.TrackLinks = tl
	}
	if req.InboundSpamThreshold != nil {
		if n := *req.InboundSpamThreshold; n < 0 || n > 30 {
			return unprocessable(codeInvalidField, "InboundSpamThreshold must be from 0 to 30, got %d.", n)
		}
		srv.InboundSpamThreshold = *req.InboundSpamThreshold
	}
	if req.InboundDomain != nil {
		d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(*req.InboundDomain), "."))
		if d != "" && !domainname.ValidMail(d) {
			return unprocessable(codeInvalidField, "InboundDomain %q is not a domain name.", *req.InboundDomain)
		}
		srv.InboundDomain = d
	}
	if req.RateLimitPerMinute != nil {
		if n := *req.RateLimitPerMinute; n < 0 || n > maxRateLimit {
			return unprocessable(codeInvalidField, "RateLimitPerMinute must be from 0 (no limit) to %d messages per minute, got %d.", maxRateLimit, n)
		}
		srv.RateLimitPerMinute = *req.RateLimitPerMinute
	}
	if req.DailyQuota != nil {
		if n := *req.DailyQuota; n < 0 || n > maxDailyQuota {
			return unprocessable(codeInvalidField, "DailyQuota must be from 0 (no quota) to %d messages per UTC day, got %d.", maxDailyQuota, n)
		}
		srv.DailyQuota = *req.DailyQuota
	}
	if req.RetentionDays != nil {
		if n := *req.RetentionDays; n < store.MinRetentionDays || n > store.MaxRetentionDays {
			return unprocessable(codeInvalidField, "RetentionDays must be from %d to %d days, got %d.", store.MinRetentionDays, store.MaxRetentionDays, n)
		}
		srv.RetentionDays = *req.RetentionDays
	}
	for _, h := range []struct {
		name string
		v    *string
		dst  *string
	}{
		{"InboundHookUrl", req.InboundHookUrl, &srv.InboundHookUrl},
		{"BounceHookUrl", req.BounceHookUrl, &srv.BounceHookUrl},
		{"OpenHookUrl", req.OpenHookUrl, &srv.OpenHookUrl},
		{"DeliveryHookUrl", req.DeliveryHookUrl, &srv.DeliveryHookUrl},
		{"ClickHookUrl", req.ClickHookUrl, &srv.ClickHookUrl},
	} {
		if h.v == nil {
			continue
		}
		u := strings.TrimSpace(*h.v)
		if u != "" && !validHookURL(u) {
			return unprocessable(codeBadWebhookURL, "%s %q is not an absolute http or https URL.", h.name, *h.v)
		}
		*h.dst = u
	}
	for _, b := range []struct {
		v   *bool
		dst *bool
	}{
		{req.SmtpApiActivated, &srv.SmtpApiActivated},
		{req.RawEmailEnabled, &srv.RawEmailEnabled},
		{req.PostFirstOpenOnly, &srv.PostFirstOpenOnly},
		{req.TrackOpens, &srv.TrackOpens},
		{req.IncludeBounceContentInHook, &srv.IncludeBounceContentInHook},
		{req.EnableSmtpApiErrorHooks, &srv.EnableSmtpApiErrorHooks},
		{req.Pinned, &srv.Pinned},
	} {
		if b.v != nil {
			*b.dst = *b.v
		}
	}
	return nil
}

// validHookURL accepts absolute http and https URLs with a host.
func validHookURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return false
	}
	host := u.Hostname()
	return host != "" && !strings.ContainsAny(host, " \t")
}

// serverJSON shows srv with tokens as ApiTokens: whatever is given, which
// is masked tokens but in the response that creates a token.
func (a *API) serverJSON(srv store.Server, tokens []string) Server {
	if tokens == nil {
		tokens = []string{}
	}
	inboundDomain := srv.InboundDomain
	if inboundDomain == "" {
		inboundDomain = "inbound." + a.publicHost()
	}
	return Server{
		ID:                         srv.ID,
		Name:                       srv.Name,
		ApiTokens:                  tokens,
		ServerLink:                 strings.TrimSuffix(a.cfg.PublicURL, "/") + "/servers/" + strconv.FormatInt(srv.ID, 10),
		Color:                      srv.Color,
		SmtpApiActivated:           srv.SmtpApiActivated,
		RawEmailEnabled:            srv.RawEmailEnabled,
		DeliveryType:               srv.DeliveryType,
		InboundAddress:             srv.InboundHash + "@" + inboundDomain,
		InboundHash:                srv.InboundHash,
		InboundDomain:              srv.InboundDomain,
		InboundSpamThreshold:       srv.InboundSpamThreshold,
		InboundHookUrl:             srv.InboundHookUrl,
		BounceHookUrl:              srv.BounceHookUrl,
		OpenHookUrl:                srv.OpenHookUrl,
		DeliveryHookUrl:            srv.DeliveryHookUrl,
		ClickHookUrl:               srv.ClickHookUrl,
		PostFirstOpenOnly:          srv.PostFirstOpenOnly,
		TrackOpens:                 srv.TrackOpens,
		TrackLinks:                 srv.TrackLinks,
		IncludeBounceContentInHook: srv.IncludeBounceContentInHook,
		EnableSmtpApiErrorHooks:    srv.EnableSmtpApiErrorHooks,
		Pinned:                     srv.Pinned,
		RateLimitPerMinute:         srv.RateLimitPerMinute,
		DailyQuota:                 srv.DailyQuota,
		RetentionDays:              srv.Retention(),
	}
}

// publicHost is the host name of PublicURL.
func (a *API) publicHost() string {
	if u, err := url.Parse(a.cfg.PublicURL); err == nil && u.Hostname() != "" {
		if ip := net.ParseIP(u.Hostname()); ip == nil {
			return u.Hostname()
		}
	}
	return "localhost"
}

// maskedServer shows srv with its tokens masked.
func (a *API) maskedServer(srv store.Server) (Server, error) {
	toks, err := a.cfg.Store.ServerTokens(srv.ID)
	if err != nil {
		return Server{}, err
	}
	masked := make([]string, len(toks))
	for i, t := range toks {
		masked[i] = auth.Mask(t.Prefix)
	}
	return a.serverJSON(srv, masked), nil
}

// ownServer returns the account's server named by the path's id; another
// account's server is not found, as a missing one.
func (a *API) ownServer(r *http.Request, p accountPrincipal) (store.Server, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Server{}, serverNotFound()
	}
	srv, err := a.cfg.Store.Server(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && srv.AccountID != p.AccountID) {
		return store.Server{}, serverNotFound()
	}
	return srv, err
}

// registerServers adds the servers endpoints: the Servers API (account
// token), token management per server (Postern's), and GET/PUT /server
// (server token).
func (a *API) registerServers() {
	a.mux.HandleFunc("GET /servers", a.account(a.listServers))
	a.mux.HandleFunc("POST /servers", a.account(a.createServer))
	a.mux.HandleFunc("GET /servers/{id}", a.account(a.getServer))
	a.mux.HandleFunc("PUT /servers/{id}", a.account(a.editServer))
	a.mux.HandleFunc("DELETE /servers/{id}", a.account(a.deleteServer))
	a.mux.HandleFunc("GET /servers/{id}/tokens", a.account(a.listServerTokens))
	a.mux.HandleFunc("POST /servers/{id}/tokens", a.account(a.createServerToken))
	a.mux.HandleFunc("DELETE /servers/{id}/tokens/{prefix}", a.account(a.revokeServerToken))
	a.mux.HandleFunc("GET /server", a.server(a.getOwnServer))
	a.mux.HandleFunc("PUT /server", a.server(a.editOwnServer))
}

func (a *API) listServers(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	count, offset, err := paging(r, codeServerQuery, maxServersCount, maxServersTotal)
	if err != nil {
		return err
	}
	all, err := a.cfg.Store.ListServers(p.AccountID)
	if err != nil {
		return err
	}
	if part := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("name"))); part != "" {
		kept := all[:0]
		for _, srv := range all {
			if strings.Contains(strings.ToLower(srv.Name), part) {
				kept = append(kept, srv)
			}
		}
		all = kept
	}
	out := ServerList{TotalCount: len(all), Servers: []Server{}}
	for _, srv := range all[min(offset, len(all)):min(offset+count, len(all))] {
		s, err := a.maskedServer(srv)
		if err != nil {
			return err
		}
		out.Servers = append(out.Servers, s)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createServer(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	var req serverRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	srv := store.Server{
		AccountID:        p.AccountID,
		Color:            "Purple",
		DeliveryType:     store.DeliveryLive,
		SmtpApiActivated: true,
		TrackLinks:       store.TrackLinksNone,
		RetentionDays:    store.DefaultRetentionDays,
	}
	if err := req.apply(&srv, true); err != nil {
		return err
	}
	var created store.Server
	tok, err := auth.CreateToken(func(nt store.NewToken) error {
		var err error
		created, err = a.cfg.Store.CreateServer(srv, nt, a.cfg.Now())
		if errors.Is(err, store.ErrDuplicateName) {
			return duplicateName(srv.Name)
		}
		return err
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: server created", "account", p.AccountID, "server", created.ID, "by", p.Prefix)
	writeJSON(w, http.StatusOK, a.serverJSON(created, []string{tok}))
	return nil
}

func duplicateName(name string) *apiError {
	return unprocessable(codeDuplicateServer, "A server named %q already exists in this account.", name)
}

func (a *API) getServer(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	out, err := a.maskedServer(srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// edit applies a PUT body to srv and answers with the edited server.
// byServer says the request came with the server's own token.
func (a *API) edit(w http.ResponseWriter, r *http.Request, srv store.Server, byServer bool) error {
	var req serverRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if changed := req.operatorFields(srv); byServer && len(changed) > 0 {
		return unprocessable(codeInvalidField, "%s can be changed only with an account token (PUT /servers/%d), not with the server's token.", strings.Join(changed, " and "), srv.ID)
	}
	if err := req.apply(&srv, false); err != nil {
		return err
	}
	err := a.cfg.Store.UpdateServer(srv)
	switch {
	case errors.Is(err, store.ErrDuplicateName):
		return duplicateName(srv.Name)
	case errors.Is(err, store.ErrNotFound):
		return serverNotFound()
	case err != nil:
		return err
	}
	srv, err = a.cfg.Store.Server(srv.ID)
	if err != nil {
		return err
	}
	out, err := a.maskedServer(srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) editServer(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	return a.edit(w, r, srv, false)
}

func (a *API) deleteServer(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	if p.Role != store.RoleOwner {
		return unprocessable(codeNoDeleteAccess, "Only an owner token may delete a server; this token's role is %s.", p.Role)
	}
	srv, err = a.cfg.Store.DeleteServer(p.AccountID, srv.ID)
	if errors.Is(err, store.ErrNotFound) {
		return serverNotFound()
	}
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: server deleted", "account", p.AccountID, "server", srv.ID, "by", p.Prefix)
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("Server %s removed.", srv.Name)})
	return nil
}

// TokenInfo is a token in listings: its prefix and creation time, never
// the token. Role is for account tokens.
type TokenInfo struct {
	Prefix    string
	Role      string `json:",omitempty"`
	CreatedAt time.Time
}

// TokenList is the answer of the token listings.
type TokenList struct {
	TotalCount int
	Tokens     []TokenInfo
}

// NewTokenInfo is the answer that creates a token: the token in full,
// shown there only.
type NewTokenInfo struct {
	Token     string
	Prefix    string
	Role      string `json:",omitempty"`
	ServerID  int64  `json:",omitempty"`
	CreatedAt time.Time
}

func tokenList(toks []store.Token) TokenList {
	out := TokenList{TotalCount: len(toks), Tokens: make([]TokenInfo, len(toks))}
	for i, t := range toks {
		out.Tokens[i] = TokenInfo{Prefix: t.Prefix, Role: string(t.Role), CreatedAt: t.CreatedAt}
	}
	return out
}

func (a *API) listServerTokens(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	toks, err := a.cfg.Store.ServerTokens(srv.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenList(toks))
	return nil
}

func (a *API) createServerToken(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	var rec store.Token
	tok, err := auth.CreateToken(func(nt store.NewToken) error {
		var err error
		rec, err = a.cfg.Store.AddServerToken(srv.ID, nt, a.cfg.Now())
		return err
	})
	if errors.Is(err, store.ErrServerMissing) {
		return serverNotFound()
	}
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: server token created", "server", srv.ID, "token", rec.Prefix, "by", p.Prefix)
	writeJSON(w, http.StatusOK, NewTokenInfo{Token: tok, Prefix: rec.Prefix, ServerID: srv.ID, CreatedAt: rec.CreatedAt})
	return nil
}

func (a *API) revokeServerToken(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	srv, err := a.ownServer(r, p)
	if err != nil {
		return err
	}
	prefix := r.PathValue("prefix")
	err = a.cfg.Store.RevokeServerToken(srv.ID, prefix)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(codeNotFound, "Token")
	}
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: server token revoked", "server", srv.ID, "token", prefix, "by", p.Prefix)
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("Token %s revoked.", prefix)})
	return nil
}

func (a *API) getOwnServer(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	out, err := a.maskedServer(srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) editOwnServer(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	return a.edit(w, r, srv, true)
}
