package api

import (
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/postern/postern/internal/unsubscribe"
	"github.com/postern/postern/store"
)

func (a *API) registerStreams() {
	a.mux.HandleFunc("GET /message-streams", a.server(a.listStreams))
	a.mux.HandleFunc("POST /message-streams", a.server(a.createStream))
	a.mux.HandleFunc("GET /message-streams/{stream}", a.server(a.getStream))
	a.mux.HandleFunc("PATCH /message-streams/{stream}", a.server(a.editStream))
	a.mux.HandleFunc("POST /message-streams/{stream}/archive", a.server(a.archiveStream))
	a.mux.HandleFunc("POST /message-streams/{stream}/unarchive", a.server(a.unarchiveStream))
	a.mux.HandleFunc("GET /message-streams/{stream}/suppressions/dump", a.server(a.dumpSuppressions))
	a.mux.HandleFunc("POST /message-streams/{stream}/suppressions", a.server(a.suppress))
	a.mux.HandleFunc("POST /message-streams/{stream}/suppressions/delete", a.server(a.unsuppress))
	a.mux.HandleFunc("GET "+unsubscribe.Path+"{token}", a.unsubscribePage)
	a.mux.HandleFunc("POST "+unsubscribe.Path+"{token}", a.unsubscribe)
}

// MessageStream is a stream in Postmark's shape.
type MessageStream struct {
	ID                                  string
	ServerID                            int64
	Name                                string
	Description                         string
	MessageStreamType                   string
	CreatedAt                           time.Time
	UpdatedAt                           *time.Time
	ArchivedAt                          *time.Time
	ExpectedPurgeDate                   *time.Time
	SubscriptionManagementConfiguration SubscriptionManagement
}

// SubscriptionManagement says who handles unsubscribes: "Postmark" (here,
// Postern: List-Unsubscribe on Broadcasts messages) or "None".
type SubscriptionManagement struct{ UnsubscribeHandlingType string }

// MessageStreamList is the answer of GET /message-streams.
type MessageStreamList struct {
	MessageStreams []MessageStream
	TotalCount     int
}

// StreamArchived is the answer of POST .../archive.
type StreamArchived struct {
	ID                string
	ServerID          int64
	ExpectedPurgeDate time.Time
}

// SuppressionDump is the answer of GET .../suppressions/dump.
type SuppressionDump struct{ Suppressions []SuppressionEntry }

// SuppressionEntry is one suppressed recipient of a stream.
type SuppressionEntry struct {
	EmailAddress      string
	SuppressionReason string // HardBounce, SpamComplaint, ManualSuppression, ...
	Origin            string // Recipient, Customer, Admin
	CreatedAt         time.Time
}

// SuppressionResults is the answer of POST .../suppressions and
// .../suppressions/delete.
type SuppressionResults struct{ Suppressions []SuppressionResult }

// SuppressionResult is what became of one address.
type SuppressionResult struct {
	EmailAddress string
	Status       string // Suppressed, Deleted or Failed
	Message      *string
}

type streamRequest struct {
	ID                                  string
	Name                                *string
	Description                         *string
	MessageStreamType                   string
	SubscriptionManagementConfiguration *SubscriptionManagement
}

const (
	codeStreamExists  = 1221
	codeStreamInvalid = 1222
	// Archived streams are kept this long before Postmark purges them;
	// Postern keeps their messages by the server's retention, and shows
	// the date Postmark would.
	archivePurgeAfter = 45 * 24 * time.Hour
)

func streamView(s store.Stream) MessageStream {
	out := MessageStream{ID: s.ID, ServerID: s.ServerID, Name: s.Name, Description: s.Description, MessageStreamType: s.Type,
		CreatedAt: s.CreatedAt.UTC(), SubscriptionManagementConfiguration: SubscriptionManagement{s.UnsubscribeHandling}}
	if !s.UpdatedAt.IsZero() {
		t := s.UpdatedAt.UTC()
		out.UpdatedAt = &t
	}
	if !s.ArchivedAt.IsZero() {
		t, purge := s.ArchivedAt.UTC(), s.ArchivedAt.UTC().Add(archivePurgeAfter)
		out.ArchivedAt, out.ExpectedPurgeDate = &t, &purge
	}
	return out
}

// stream reads the server's stream id: outbound, or a stored one.
func (a *API) stream(srv store.Server, id string) (store.Stream, error) {
	if id == store.DefaultStreamID {
		return store.OutboundStream(srv), nil
	}
	st, err := a.cfg.Store.Stream(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return st, notFound(codeStreamNotFound, "The message stream")
	}
	return st, err
}

func (a *API) listStreams(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	stored, err := a.cfg.Store.ListStreams(srv.ID)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	typ, archived := q.Get("MessageStreamType"), strings.EqualFold(q.Get("IncludeArchivedStreams"), "true")
	out := MessageStreamList{MessageStreams: []MessageStream{}}
	for _, s := range append([]store.Stream{store.OutboundStream(srv)}, stored...) {
		if (typ != "" && !strings.EqualFold(typ, "All") && !strings.EqualFold(typ, s.Type)) || (!s.ArchivedAt.IsZero() && !archived) {
			continue
		}
		out.MessageStreams = append(out.MessageStreams, streamView(s))
	}
	out.TotalCount = len(out.MessageStreams)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createStream(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	var req streamRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	st := store.Stream{ServerID: srv.ID, ID: req.ID, Type: req.MessageStreamType, CreatedAt: a.cfg.Now().UTC(), UnsubscribeHandling: "None"}
	switch {
	case !store.ValidStreamID(req.ID):
		return unprocessable(codeStreamInvalid, "ID must be 1 to 30 lower-case letters, digits, '-' or '_', starting with a letter or digit; got %q.", req.ID)
	case req.ID == store.DefaultStreamID:
		return unprocessable(codeStreamExists, "The message stream %q already exists.", req.ID)
	case req.MessageStreamType != store.StreamTransactional && req.MessageStreamType != store.StreamBroadcasts:
		return unprocessable(codeStreamInvalid, "MessageStreamType must be Transactional or Broadcasts; got %q.", req.MessageStreamType)
	case req.Name == nil || strings.TrimSpace(*req.Name) == "":
		return unprocessable(codeStreamInvalid, "Name is required.")
	}
	if st.Type == store.StreamBroadcasts {
		st.UnsubscribeHandling = "Postmark"
	}
	applyStream(req, &st)
	switch err := a.cfg.Store.CreateStream(st); {
	case errors.Is(err, store.ErrStreamExists):
		return unprocessable(codeStreamExists, "The message stream %q already exists.", req.ID)
	case errors.Is(err, store.ErrServerMissing):
		return serverNotFound()
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, streamView(st))
	return nil
}

func applyStream(req streamRequest, st *store.Stream) {
	if req.Name != nil {
		st.Name = strings.TrimSpace(*req.Name)
	}
	if req.Description != nil {
		st.Description = *req.Description
	}
	if c := req.SubscriptionManagementConfiguration; c != nil && st.Type == store.StreamBroadcasts &&
		(c.UnsubscribeHandlingType == "Postmark" || c.UnsubscribeHandlingType == "None") {
		st.UnsubscribeHandling = c.UnsubscribeHandlingType
	}
}

func (a *API) getStream(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, err := a.stream(srv, r.PathValue("stream"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, streamView(st))
	return nil
}

// storedStream is a stream that may change: any but outbound.
func (a *API) storedStream(r *http.Request, srv store.Server) (store.Stream, error) {
	id := r.PathValue("stream")
	if id == store.DefaultStreamID {
		return store.Stream{}, unprocessable(codeStreamInvalid, "The default transactional stream cannot be changed or archived.")
	}
	return a.stream(srv, id)
}

func (a *API) editStream(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, err := a.storedStream(r, srv)
	if err != nil {
		return err
	}
	var req streamRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if req.Name != nil && strings.TrimSpace(*req.Name) == "" {
		return unprocessable(codeStreamInvalid, "Name must not be empty.")
	}
	applyStream(req, &st)
	st.UpdatedAt = a.cfg.Now().UTC()
	if err := a.cfg.Store.UpdateStream(st); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, streamView(st))
	return nil
}

func (a *API) archiveStream(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, err := a.storedStream(r, srv)
	if err != nil {
		return err
	}
	if st.ArchivedAt.IsZero() {
		st.ArchivedAt = a.cfg.Now().UTC()
		if err := a.cfg.Store.UpdateStream(st); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, StreamArchived{ID: st.ID, ServerID: st.ServerID, ExpectedPurgeDate: st.ArchivedAt.UTC().Add(archivePurgeAfter)})
	return nil
}

func (a *API) unarchiveStream(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, err := a.storedStream(r, srv)
	if err != nil {
		return err
	}
	st.ArchivedAt = time.Time{}
	if err := a.cfg.Store.UpdateStream(st); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, streamView(st))
	return nil
}

// dumpSuppressions lists a stream's suppressions, and the recipients
// bounces made inactive for the whole server, which hold in every
// stream.
func (a *API) dumpSuppressions(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, err := a.stream(srv, r.PathValue("stream"))
	if err != nil {
		return err
	}
	own, err := a.cfg.Store.StreamSuppressions(srv.ID, st.ID)
	if err != nil {
		return err
	}
	out := SuppressionDump{Suppressions: []SuppressionEntry{}}
	for _, s := range own {
		out.Suppressions = append(out.Suppressions, SuppressionEntry{EmailAddress: s.Email, SuppressionReason: s.Reason, Origin: s.Origin, CreatedAt: s.CreatedAt.UTC()})
	}
	inactive := true
	bounces, err := a.cfg.Store.Bounces(srv.ID, store.BounceQuery{Inactive: &inactive, Count: store.SearchScanLimit})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, b := range bounces.Bounces {
		if key := strings.ToLower(b.Email); !seen[key] {
			seen[key] = true
			out.Suppressions = append(out.Suppressions, SuppressionEntry{EmailAddress: b.Email, SuppressionReason: b.Type, Origin: "Recipient", CreatedAt: b.BouncedAt.UTC()})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type suppressionRequest struct {
	Suppressions []struct{ EmailAddress string }
}

func (a *API) suppressionRequest(r *http.Request, srv store.Server) (store.Stream, []string, error) {
	st, err := a.stream(srv, r.PathValue("stream"))
	if err != nil {
		return st, nil, err
	}
	var req suppressionRequest
	if err := a.decode(r, &req); err != nil {
		return st, nil, err
	}
	if len(req.Suppressions) > 50 {
		return st, nil, unprocessable(codeInvalidField, "At most 50 addresses per request; this one has %d.", len(req.Suppressions))
	}
	emails := make([]string, len(req.Suppressions))
	for i, s := range req.Suppressions {
		emails[i] = s.EmailAddress
	}
	return st, emails, nil
}

func (a *API) suppress(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, emails, err := a.suppressionRequest(r, srv)
	if err != nil {
		return err
	}
	out := SuppressionResults{Suppressions: []SuppressionResult{}}
	var sups []store.StreamSuppression
	now := a.cfg.Now().UTC()
	for _, e := range emails {
		if addr, err := mail.ParseAddress(e); err != nil || addr.Address != strings.TrimSpace(e) {
			msg := "Invalid email address."
			out.Suppressions = append(out.Suppressions, SuppressionResult{EmailAddress: e, Status: "Failed", Message: &msg})
			continue
		}
		sups = append(sups, store.StreamSuppression{ServerID: srv.ID, Stream: st.ID, Email: strings.TrimSpace(e), Reason: store.ReasonManual, Origin: store.OriginCustomer, CreatedAt: now})
		out.Suppressions = append(out.Suppressions, SuppressionResult{EmailAddress: e, Status: "Suppressed"})
	}
	if err := a.cfg.Store.SuppressInStream(sups, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) unsuppress(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	st, emails, err := a.suppressionRequest(r, srv)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.UnsuppressInStream(srv.ID, st.ID, emails); err != nil {
		return err
	}
	out := SuppressionResults{Suppressions: []SuppressionResult{}}
	for _, e := range emails {
		out.Suppressions = append(out.Suppressions, SuppressionResult{EmailAddress: e, Status: "Deleted"})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// unsubscribeTarget reads and checks the link's token.
func (a *API) unsubscribeTarget(r *http.Request) (unsubscribe.Target, error) {
	key, err := a.cfg.Store.InstallationKey()
	if err != nil {
		return unsubscribe.Target{}, err
	}
	return unsubscribe.Parse(key, r.PathValue("token"))
}

// unsubscribePage answers a person who opens the link: a page with one
// button, since mail filters fetch links by GET and must not unsubscribe
// anyone (RFC 8058 §4).
func (a *API) unsubscribePage(w http.ResponseWriter, r *http.Request) {
	t, err := a.unsubscribeTarget(r)
	if err != nil {
		http.Error(w, "This unsubscribe link is not valid.", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html><title>Unsubscribe</title><form method="post"><p>Stop sending %s these messages?</p>`+
		`<input type="hidden" name="List-Unsubscribe" value="One-Click"><button>Unsubscribe</button></form>`, html.EscapeString(t.Email))
}

// unsubscribe is the one-click POST (RFC 8058): the recipient is
// suppressed in the stream, and the server's webhooks hear of it.
func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) {
	t, err := a.unsubscribeTarget(r)
	if err != nil {
		http.Error(w, "This unsubscribe link is not valid.", http.StatusNotFound)
		return
	}
	now := a.cfg.Now().UTC()
	change := &store.SubscriptionChange{ServerID: t.ServerID, Stream: t.Stream, MessageID: t.MessageID, Recipient: t.Email, ChangedAt: now}
	if m, err := a.cfg.Store.Message(t.ServerID, t.MessageID); err == nil {
		change.Tag, change.Metadata = m.Tag, m.Metadata
	}
	err = a.cfg.Store.SuppressInStream([]store.StreamSuppression{{ServerID: t.ServerID, Stream: t.Stream, Email: t.Email,
		Reason: store.ReasonManual, Origin: store.OriginRecipient, CreatedAt: now}}, change)
	switch {
	case errors.Is(err, store.ErrServerMissing):
		http.Error(w, "This unsubscribe link is not valid.", http.StatusNotFound)
		return
	case err != nil:
		a.cfg.Logger.Error("api: unsubscribe", "server", t.ServerID, "err", err)
		http.Error(w, "Try again later.", http.StatusServiceUnavailable)
		return
	}
	if a.cfg.Unsubscribed != nil {
		a.cfg.Unsubscribed()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "Unsubscribed.")
}
