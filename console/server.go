package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

// pageSize is how many messages or bounces a page lists.
const pageSize = 50

// serverNav is the server a page is about, with the tabs v may open.
type serverNav struct {
	store.Server
	Admin bool // Server Admin access: bounces, settings, tokens, dumps
	Tab   string
}

func (c *Console) registerServer() {
	c.mux.HandleFunc("GET /servers/{id}", c.signedIn(c.activity))
	c.mux.HandleFunc("GET /servers/{id}/messages/{mid}", c.signedIn(c.messagePage))
	c.mux.HandleFunc("GET /servers/{id}/messages/{mid}/raw", c.signedIn(c.rawMessage))
	c.mux.HandleFunc("GET /servers/{id}/bounces", c.signedIn(c.bouncesPage))
	c.mux.HandleFunc("POST /servers/{id}/bounces/{bid}/activate", c.signedIn(c.activateBounce))
	c.mux.HandleFunc("GET /servers/{id}/stats", c.signedIn(c.statsPage))
	c.mux.HandleFunc("GET /servers/{id}/settings", c.signedIn(c.settingsPage))
	c.mux.HandleFunc("POST /servers/{id}/settings", c.signedIn(c.saveSettings))
	c.mux.HandleFunc("POST /servers/{id}/delete", c.signedIn(c.deleteServer))
	c.mux.HandleFunc("GET /servers/{id}/tokens", c.signedIn(c.tokensPage))
	c.mux.HandleFunc("POST /servers/{id}/tokens", c.signedIn(c.createToken))
	c.mux.HandleFunc("POST /servers/{id}/tokens/{prefix}/revoke", c.signedIn(c.revokeToken))
}

func (c *Console) renderServer(w http.ResponseWriter, v *viewer, status int, tmpl, tab string, srv store.Server, access string, data any) {
	c.renderPage(w, status, tmpl, page{V: v, Title: srv.Name, D: data, Server: &serverNav{Server: srv, Admin: access == store.AccessAdmin, Tab: tab}})
}

// activityPage is a page of a server's messages and the filters that
// chose them.
type activityPage struct {
	Recipient, Tag, Status, From, To string
	Statuses                         []string
	Result                           store.SearchResult
	Page, Pages                      int
	Prev, Next                       string // query strings of the pages around
	Error                            string
}

var messageStatuses = []string{store.StatusQueued, store.StatusSent, store.StatusPartial, store.StatusBounced}

func (c *Console) activity(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, access, err := c.server(r, v)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	p := activityPage{Recipient: strings.TrimSpace(q.Get("recipient")), Tag: strings.TrimSpace(q.Get("tag")),
		Status: q.Get("status"), From: q.Get("from"), To: q.Get("to"), Statuses: messageStatuses}
	p.Page, _ = strconv.Atoi(q.Get("page"))
	p.Page = max(p.Page, 1)
	query := store.MessageQuery{Count: pageSize, Offset: (p.Page - 1) * pageSize, Recipient: p.Recipient, Tag: p.Tag}
	for _, s := range messageStatuses {
		if s == p.Status {
			query.Statuses = []string{s}
		}
	}
	status := http.StatusOK
	if query.From, err = day(p.From, false); err == nil {
		query.To, err = day(p.To, true)
	}
	if err != nil {
		p.Error, status = err.Error(), http.StatusUnprocessableEntity
	} else if p.Result, err = c.cfg.Store.SearchMessages(srv.ID, query); err != nil {
		return err
	}
	p.Pages = max(1, (p.Result.Total+pageSize-1)/pageSize)
	link := func(n int) string {
		q := url.Values{}
		for k, val := range map[string]string{"recipient": p.Recipient, "tag": p.Tag, "status": p.Status, "from": p.From, "to": p.To} {
			if val != "" {
				q.Set(k, val)
			}
		}
		q.Set("page", strconv.Itoa(n))
		return "?" + q.Encode()
	}
	if p.Page > 1 {
		p.Prev = link(p.Page - 1)
	}
	if p.Page < p.Pages {
		p.Next = link(p.Page + 1)
	}
	c.renderServer(w, v, status, "activity", "activity", srv, access, p)
	return nil
}

// day reads a date field (2006-01-02); end makes it the day's last
// moment.
func day(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return t, fmt.Errorf("The date %q is not a date like 2026-12-31.", s)
	}
	if end {
		t = t.Add(24*time.Hour - time.Nanosecond)
	}
	return t, nil
}

type messagePage struct {
	Message store.Message
	Events  []store.Event
	Headers []headerField
	Raw     bool // the raw MIME is still kept
}

type headerField struct{ Name, Value string }

// message is the message of the path on srv, errNotFound when missing.
func (c *Console) message(r *http.Request, srv store.Server) (store.Message, error) {
	m, err := c.cfg.Store.Message(srv.ID, r.PathValue("mid"))
	if errors.Is(err, store.ErrNotFound) {
		return m, errNotFound
	}
	return m, err
}

func (c *Console) messagePage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, access, err := c.server(r, v)
	if err != nil {
		return err
	}
	p := messagePage{}
	if p.Message, err = c.message(r, srv); err != nil {
		return err
	}
	if p.Events, err = c.cfg.Store.Events(srv.ID, p.Message.MessageID); err != nil {
		return err
	}
	raw, err := c.cfg.Store.RawMessage(srv.ID, p.Message.MessageID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	default:
		p.Raw = true
		for _, f := range message.Split(raw).Fields {
			p.Headers = append(p.Headers, headerField{f.Name, message.DecodeText(f.Value())})
		}
	}
	c.renderServer(w, v, http.StatusOK, "message", "activity", srv, access, p)
	return nil
}

// rawMessage sends the message as it was accepted, as text that no
// browser runs, to a Server Admin.
func (c *Console) rawMessage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	m, err := c.message(r, srv)
	if err != nil {
		return err
	}
	raw, err := c.cfg.Store.RawMessage(srv.ID, m.MessageID)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'")
	w.Header().Set("Content-Disposition", `inline; filename="`+m.MessageID+`.eml"`)
	_, _ = w.Write(raw)
	return nil
}

type bouncesPage struct {
	Result      store.BounceResult
	Page, Pages int
}

func (c *Console) bouncesPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	p := bouncesPage{}
	p.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	p.Page = max(p.Page, 1)
	if p.Result, err = c.cfg.Store.Bounces(srv.ID, store.BounceQuery{Count: pageSize, Offset: (p.Page - 1) * pageSize}); err != nil {
		return err
	}
	p.Pages = max(1, (p.Result.Total+pageSize-1)/pageSize)
	c.renderServer(w, v, http.StatusOK, "bounces", "bounces", srv, store.AccessAdmin, p)
	return nil
}

func (c *Console) activateBounce(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	id, ok := pathID(r, "bid")
	if !ok {
		return errNotFound
	}
	b, err := c.cfg.Store.ActivateBounce(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	c.cfg.Logger.Info("console: bounce reactivated", "server", srv.ID, "bounce", b.ID, "user", v.User.ID)
	redirect(w, r, fmt.Sprintf("/servers/%d/bounces", srv.ID))
	return nil
}

func (c *Console) statsPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, access, err := c.server(r, v)
	if err != nil {
		return err
	}
	now := c.cfg.Now().UTC()
	days, err := c.cfg.Store.Stats(srv.ID, store.StatsQuery{From: now.AddDate(0, 0, -29), To: now})
	if err != nil {
		return err
	}
	c.renderServer(w, v, http.StatusOK, "stats", "stats", srv, access, newChart(days, now, 30))
	return nil
}

type settingsPage struct {
	Colors    []string
	Error     string
	CanDelete bool
	Form      store.Server
}

func (c *Console) settingsPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	c.renderServer(w, v, http.StatusOK, "settings", "settings", srv, store.AccessAdmin, settingsPage{Colors: store.ServerColors, CanDelete: v.IsOwner(), Form: srv})
	return nil
}

// saveSettings applies the settings form with the API's rules: the name,
// the colour, the limits and SMTP; the delivery type never changes.
func (c *Console) saveSettings(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	next := srv
	problem := func(msg string) error {
		c.renderServer(w, v, http.StatusUnprocessableEntity, "settings", "settings", srv, store.AccessAdmin,
			settingsPage{Colors: store.ServerColors, CanDelete: v.IsOwner(), Form: next, Error: msg})
		return nil
	}
	next.Name = r.PostFormValue("name")
	name, err := store.ServerName(next.Name)
	if err != nil {
		return problem(sentence(err) + ".")
	}
	next.Name = name
	color, ok := store.ServerColor(r.PostFormValue("color"))
	if !ok {
		return problem("Pick one of the colours.")
	}
	next.Color = color
	next.SmtpApiActivated = r.PostFormValue("smtp") == "on"
	for _, f := range []struct {
		field, label string
		to           *int
	}{{"rate", "The rate limit", &next.RateLimitPerMinute}, {"quota", "The daily quota", &next.DailyQuota}, {"retention", "The retention", &next.RetentionDays}} {
		s := strings.TrimSpace(r.PostFormValue(f.field))
		if s == "" {
			s = "0"
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return problem(f.label + " must be a whole number, 0 or more.")
		}
		*f.to = n
	}
	if next.RetentionDays == 0 {
		next.RetentionDays = store.DefaultRetentionDays
	}
	next = store.UpdatedServer(srv, next)
	if err := c.cfg.Store.UpdateServer(next); errors.Is(err, store.ErrDuplicateName) {
		return problem("A server named " + next.Name + " already exists in this account.")
	} else if err != nil {
		return err
	}
	c.cfg.Logger.Info("console: server settings changed", "server", srv.ID, "user", v.User.ID)
	redirect(w, r, fmt.Sprintf("/servers/%d/settings", srv.ID))
	return nil
}

func (c *Console) deleteServer(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	if !v.IsOwner() {
		return forbidden("Only an Owner of the account deletes servers.")
	}
	if r.PostFormValue("confirm") != srv.Name {
		return invalid("Type the server's name, %s, to delete it.", srv.Name)
	}
	if _, err := c.cfg.Store.DeleteServer(v.Account.ID, srv.ID); err != nil {
		return err
	}
	c.cfg.Logger.Info("console: server deleted", "server", srv.ID, "user", v.User.ID)
	redirect(w, r, "/")
	return nil
}

type tokensPage struct {
	Tokens []store.Token
	// New is a token just made, shown this once, with the swaks line
	// that sends a first message with it.
	New, Swaks string
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	return c.showTokens(w, v, srv, "")
}

func (c *Console) showTokens(w http.ResponseWriter, v *viewer, srv store.Server, token string) error {
	toks, err := c.cfg.Store.ServerTokens(srv.ID)
	if err != nil {
		return err
	}
	store.SortTokens(toks)
	p := tokensPage{Tokens: toks, New: token}
	if token != "" {
		host, port := c.cfg.SMTPAddr, "2525"
		if i := strings.LastIndex(host, ":"); i >= 0 {
			host, port = host[:i], host[i+1:]
		}
		p.Swaks = fmt.Sprintf("swaks --server %s --port %s --tls --auth PLAIN --auth-user %s --auth-password %s --from you@example.com --to someone@example.com",
			host, port, token, token)
	}
	c.renderServer(w, v, http.StatusOK, "tokens", "tokens", srv, store.AccessAdmin, p)
	return nil
}

// showToken shows a new server's first token on its tokens page.
func (c *Console) showToken(w http.ResponseWriter, v *viewer, srv store.Server, token string) error {
	return c.showTokens(w, v, srv, token)
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	token, err := auth.CreateToken(func(nt store.NewToken) error {
		_, err := c.cfg.Store.AddServerToken(srv.ID, nt, c.cfg.Now())
		return err
	})
	var capErr *store.CapError
	if errors.As(err, &capErr) {
		return invalid("%s.", sentence(err))
	}
	if err != nil {
		return err
	}
	c.cfg.Logger.Info("console: server token created", "server", srv.ID, "prefix", auth.StoreToken(token).Prefix, "user", v.User.ID)
	return c.showToken(w, v, srv, token)
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	err = c.cfg.Store.RevokeServerToken(srv.ID, r.PathValue("prefix"))
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	if err != nil {
		return err
	}
	c.cfg.Logger.Info("console: server token revoked", "server", srv.ID, "prefix", r.PathValue("prefix"), "user", v.User.ID)
	redirect(w, r, fmt.Sprintf("/servers/%d/tokens", srv.ID))
	return nil
}
