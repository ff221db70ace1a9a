package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/postern/postern/store"
)

// Bounces ErrorCodes.
const (
	codeBouncesQuery   = 1000
	codeBounceNotFound = 1001
)

// registerBounces adds the bounces endpoints.
func (a *API) registerBounces() {
	a.mux.HandleFunc("GET /deliverystats", a.server(a.deliveryStats))
	a.mux.HandleFunc("GET /bounces", a.server(a.listBounces))
	a.mux.HandleFunc("GET /bounces/{id}", a.server(a.getBounce))
	a.mux.HandleFunc("GET /bounces/{id}/dump", a.server(a.bounceDump))
	a.mux.HandleFunc("PUT /bounces/{id}/activate", a.server(a.activateBounce))
}

func formatID(id int64) string {
	if id == 0 {
		return ""
	}
	return strconv.FormatInt(id, 10)
}

func (a *API) deliveryStats(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	inactive, byType, err := a.cfg.Store.DeliveryStats(srv.ID)
	if err != nil {
		return err
	}
	type entry struct {
		Type  string `json:",omitempty"`
		Name  string
		Count int
	}
	all := 0
	for _, n := range byType {
		all += n
	}
	out := struct {
		InactiveMails int
		Bounces       []entry
	}{InactiveMails: inactive, Bounces: []entry{{Name: "All", Count: all}}}
	for _, t := range store.BounceTypes {
		if n := byType[t.Type]; n > 0 {
			out.Bounces = append(out.Bounces, entry{t.Type, t.Name, n})
			delete(byType, t.Type)
		}
	}
	for name, n := range byType { // a type Postern does not know: still counted
		out.Bounces = append(out.Bounces, entry{name, name, n})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) listBounces(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	count, offset, err := paging(r, codeBouncesQuery, maxPageCount, maxPageTotal)
	if err != nil {
		return err
	}
	from, to, err := dateRange(r, codeBouncesQuery)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	bq := store.BounceQuery{
		Count: count, Offset: offset,
		Email:     strings.TrimSpace(q.Get("emailFilter")),
		Tag:       q.Get("tag"),
		MessageID: strings.TrimSpace(q.Get("messageID")),
		From:      from, To: to,
	}
	if v := q.Get("type"); v != "" {
		t, ok := store.LookupBounceType(v)
		if !ok {
			return errorf(http.StatusUnprocessableEntity, codeBouncesQuery, "type %q is not a bounce type (HardBounce, SoftBounce, Transient, ...).", v)
		}
		bq.Type = t.Type
	}
	if v := q.Get("inactive"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusUnprocessableEntity, codeBouncesQuery, "inactive must be true or false.")
		}
		bq.Inactive = &b
	}
	res, err := a.cfg.Store.Bounces(srv.ID, bq)
	if err != nil {
		return err
	}
	out := struct {
		TotalCount int
		// TotalCountCapped: as in message searches.
		TotalCountCapped bool `json:",omitempty"`
		Bounces          []store.BounceView
	}{TotalCount: res.Total, TotalCountCapped: res.Capped, Bounces: make([]store.BounceView, 0, len(res.Bounces))}
	for _, b := range res.Bounces {
		out.Bounces = append(out.Bounces, store.ViewBounce(b, false))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bounce reads the bounce named in the path; another server's bounce is
// not found, exactly as a missing one.
func (a *API) bounce(r *http.Request, srv store.Server) (store.Bounce, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Bounce{}, notFound(codeBounceNotFound, "This bounce")
	}
	b, err := a.cfg.Store.Bounce(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return b, notFound(codeBounceNotFound, "This bounce")
	}
	return b, err
}

func (a *API) getBounce(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	b, err := a.bounce(r, srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, store.ViewBounce(b, true))
	return nil
}

// bounceDump answers the bounced message's raw MIME (Postern receives no
// bounce message to dump), or an empty Body once retention purged it.
func (a *API) bounceDump(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	b, err := a.bounce(r, srv)
	if err != nil {
		return err
	}
	raw, err := a.cfg.Store.RawMessage(srv.ID, b.MessageID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	writeJSON(w, http.StatusOK, struct{ Body string }{string(raw)})
	return nil
}

func (a *API) activateBounce(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	id, ok := pathID(r, "id")
	if !ok {
		return notFound(codeBounceNotFound, "This bounce")
	}
	b, err := a.cfg.Store.ActivateBounce(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(codeBounceNotFound, "This bounce")
	}
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: bounce activated", "server", srv.ID, "bounce", b.ID)
	writeJSON(w, http.StatusOK, struct {
		Message string
		Bounce  store.BounceView
	}{"OK", store.ViewBounce(b, true)})
	return nil
}
