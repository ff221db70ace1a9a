package console

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// serverRow is one server on the servers page, its figures formatted
// here: the page has a thousand rows, and the template only places them.
type serverRow struct {
	// The server's own fields the row shows, not the whole Server: the
	// template looks fields up by name, and a flat struct is quicker
	// to search.
	ID                        int64
	Name, Color, DeliveryType string
	Pinned                    bool
	Sent30, BounceRate, Queue string
	// LastAt and LastISO tell when the last message came ("" for none),
	// Key is the name as the filter matches it, Unpinned what the pin
	// button sets.
	LastAt, LastISO, Key, Unpinned string
	CanEdit                        bool          // pin, colour
	ColorOptions                   template.HTML // the colour picker's options, this one selected
}

// colorOptions are the colour picker's <option>s with each colour
// selected, made once: the colours are constants.
var colorOptions = func() map[string]template.HTML {
	out := map[string]template.HTML{}
	for _, selected := range store.ServerColors {
		var b strings.Builder
		for _, c := range store.ServerColors {
			b.WriteString("<option")
			if c == selected {
				b.WriteString(" selected")
			}
			b.WriteString(">" + template.HTMLEscapeString(c) + "</option>")
		}
		out[selected] = template.HTML(b.String())
	}
	return out
}()

type serversPage struct {
	Rows      []serverRow
	Colors    []string
	CanCreate bool
	Error     string
	Name      string
}

func (c *Console) registerServers() {
	c.mux.HandleFunc("GET /{$}", c.signedIn(c.serversPage))
	c.mux.HandleFunc("POST /servers", c.signedIn(c.createServer))
	c.mux.HandleFunc("POST /servers/{id}/pin", c.signedIn(c.pinServer))
	c.mux.HandleFunc("POST /servers/{id}/color", c.signedIn(c.colorServer))
}

// visibleServers are the servers of the account v may see, pinned first
// then by name (store.SortServers).
func (c *Console) visibleServers(v *viewer) ([]store.Server, error) {
	all, err := c.cfg.Store.ListServers(v.Account.ID)
	if err != nil {
		return nil, err
	}
	kept := all[:0]
	for _, srv := range all {
		if v.access(srv) != "" {
			kept = append(kept, srv)
		}
	}
	store.SortServers(kept)
	return kept, nil
}

// serverRows adds each server's last 30 days, queue and last message.
func (c *Console) serverRows(v *viewer, servers []store.Server) ([]serverRow, error) {
	queue, err := c.cfg.Store.QueueStats()
	if err != nil {
		return nil, err
	}
	depth := make(map[int64]int, len(queue))
	for _, q := range queue {
		depth[q.ServerID] = q.Depth
	}
	now := c.cfg.Now().UTC()
	from := now.AddDate(0, 0, -29)
	rows := make([]serverRow, 0, len(servers))
	for _, srv := range servers {
		row := serverRow{ID: srv.ID, Name: srv.Name, Color: srv.Color, DeliveryType: srv.DeliveryType, Pinned: srv.Pinned, Queue: thousands(int64(depth[srv.ID])), CanEdit: v.access(srv) == store.AccessAdmin,
			ColorOptions: colorOptions[srv.Color]}
		days, err := c.cfg.Store.Stats(srv.ID, store.StatsQuery{From: from, To: now})
		if err != nil {
			return nil, err
		}
		var sent, bounced int64
		for _, d := range days {
			sent += d.Counts[store.StatSent]
			bounced += store.Bounced(d.Counts)
		}
		row.Sent30, row.BounceRate = thousands(sent), percentOf(bounced, sent)
		last, err := c.cfg.Store.Messages(srv.ID, 1)
		if err != nil {
			return nil, err
		}
		if len(last) > 0 {
			row.LastAt, row.LastISO = when(last[0].ReceivedAt), last[0].ReceivedAt.UTC().Format(time.RFC3339)
		}
		row.Key, row.Unpinned = strings.ToLower(srv.Name), strconv.FormatBool(!srv.Pinned)
		rows = append(rows, row)
	}
	return rows, nil
}

func (c *Console) serversPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	return c.showServers(w, v, http.StatusOK, serversPage{})
}

func (c *Console) showServers(w http.ResponseWriter, v *viewer, status int, p serversPage) error {
	servers, err := c.visibleServers(v)
	if err != nil {
		return err
	}
	if p.Rows, err = c.serverRows(v, servers); err != nil {
		return err
	}
	p.Colors, p.CanCreate = store.ServerColors, v.AccountWide()
	c.render(w, v, status, "servers", "Servers", p)
	return nil
}

// createServer creates a server as the API does, with its first token,
// and shows that token once.
func (c *Console) createServer(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	p := serversPage{Name: r.PostFormValue("name")}
	name, err := store.ServerName(p.Name)
	if err != nil {
		p.Error = sentence(err) + "."
		return c.showServers(w, v, http.StatusUnprocessableEntity, p)
	}
	color, ok := store.ServerColor(r.PostFormValue("color"))
	if !ok {
		color = store.ServerColors[0]
	}
	delivery := store.DeliveryLive
	if r.PostFormValue("delivery") == store.DeliverySandbox {
		delivery = store.DeliverySandbox
	}
	srv := store.Server{AccountID: v.Account.ID, Name: name, Color: color, DeliveryType: delivery, SmtpApiActivated: true}
	var created store.Server
	token, err := auth.CreateToken(func(nt store.NewToken) error {
		var err error
		created, err = c.cfg.Store.CreateServer(srv, nt, c.cfg.Now())
		return err
	})
	var capErr *store.CapError
	switch {
	case errors.Is(err, store.ErrDuplicateName):
		p.Error = "A server named " + name + " already exists in this account."
		return c.showServers(w, v, http.StatusUnprocessableEntity, p)
	case errors.As(err, &capErr):
		p.Error = sentence(err) + "."
		return c.showServers(w, v, http.StatusUnprocessableEntity, p)
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console: server created", "account", v.Account.ID, "server", created.ID, "user", v.User.ID)
	return c.showToken(w, v, created, token)
}

// editableServer is the server of the path that v may change (pin,
// colour, settings, tokens): 404 when v may not see it, 403 when only
// viewing.
func (c *Console) editableServer(r *http.Request, v *viewer) (store.Server, error) {
	srv, access, err := c.server(r, v)
	if err != nil {
		return srv, err
	}
	if access != store.AccessAdmin {
		return srv, forbidden("Your access to %s is Viewer: activity and stats only.", srv.Name)
	}
	return srv, nil
}

// server is the server of the path and v's access to it; errNotFound
// when v may not see it, exactly as when it does not exist.
func (c *Console) server(r *http.Request, v *viewer) (store.Server, string, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Server{}, "", errNotFound
	}
	return c.serverByID(v, id)
}

// serverByID is server id and v's access to it, as server.
func (c *Console) serverByID(v *viewer, id int64) (store.Server, string, error) {
	srv, err := c.cfg.Store.Server(id)
	if errors.Is(err, store.ErrNotFound) {
		return srv, "", errNotFound
	}
	if err != nil {
		return srv, "", err
	}
	access := v.access(srv)
	if access == "" {
		return store.Server{}, "", errNotFound
	}
	return srv, access, nil
}

// back is where a form on the servers page or a server's page returns:
// the page it came from when that is the console's, else fallback.
func back(r *http.Request, fallback string) string {
	if next := r.PostFormValue("next"); next != "" {
		return safeNext(next)
	}
	return fallback
}

func (c *Console) pinServer(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	srv.Pinned = r.PostFormValue("pinned") == "true"
	if err := c.cfg.Store.UpdateServer(srv); err != nil {
		return err
	}
	redirect(w, r, back(r, "/"))
	return nil
}

func (c *Console) colorServer(w http.ResponseWriter, r *http.Request, v *viewer) error {
	srv, err := c.editableServer(r, v)
	if err != nil {
		return err
	}
	color, ok := store.ServerColor(r.PostFormValue("color"))
	if !ok {
		return invalid("Colour %q is not one of %s.", r.PostFormValue("color"), strings.Join(store.ServerColors, ", "))
	}
	srv.Color = color
	if err := c.cfg.Store.UpdateServer(srv); err != nil {
		return err
	}
	redirect(w, r, back(r, "/"))
	return nil
}
