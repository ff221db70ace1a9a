package api

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

// Messages ErrorCodes.
const (
	codeMessagesQuery   = 700
	codeMessageNotFound = 701
)

// Paging limits of the search endpoints (messages and bounces).
const (
	maxPageCount = 500
	maxPageTotal = 10000
)

// registerMessages adds the messages endpoints.
func (a *API) registerMessages() {
	a.mux.HandleFunc("GET /messages/outbound", a.server(a.searchMessages))
	a.mux.HandleFunc("GET /messages/outbound/{id}/details", a.server(a.messageDetails))
	a.mux.HandleFunc("GET /messages/outbound/{id}/dump", a.server(a.messageDump))
}

// MessageAddress is a mailbox in Postmark's shape: Name is null without one.
type MessageAddress struct {
	Email string
	Name  *string
}

// OutboundMessageList is the answer of GET /messages/outbound.
type OutboundMessageList struct {
	TotalCount int
	// TotalCountCapped (Postern's own, only when true): a filtered
	// search stopped after store.SearchScanLimit messages, so TotalCount
	// is a lower bound; narrow the dates to see past it.
	TotalCountCapped bool `json:",omitempty"`
	Messages         []OutboundMessage
}

// OutboundMessage is a message in Postmark's outbound search.
type OutboundMessage struct {
	Tag           string
	MessageID     string
	MessageStream string
	To            []MessageAddress
	Cc            []MessageAddress
	Bcc           []MessageAddress
	Recipients    []string
	ReceivedAt    time.Time
	From          string
	Subject       string
	Attachments   []string
	Status        string
	TrackOpens    bool
	TrackLinks    string
	Metadata      map[string]string
}

// OutboundMessageDetails is the answer of GET /messages/outbound/{id}/details.
type OutboundMessageDetails struct {
	OutboundMessage
	TextBody      string
	HtmlBody      string
	Body          string
	MessageEvents []MessageEvent
}

// MessageEvent is one event of a message, in its details.
type MessageEvent struct {
	Recipient  string
	Type       string
	ReceivedAt time.Time
	Details    any
}

// deliveryDetailsJSON are a Delivered or Transient event's Details.
// TLS is Postern's: Postmark has no such field.
type deliveryDetailsJSON struct {
	DeliveryMessage   string
	DestinationServer string
	DestinationIP     string
	TLS               *TLSDetails `json:",omitempty"`
}

// TLSDetails say what protected the session of a delivery attempt.
type TLSDetails struct {
	// Policy is what the session was held to: "none" (plaintext),
	// "opportunistic" (TLS because the server offered it), "mta-sts" (the
	// domain's MTA-STS policy in enforce mode) or "dane" (the server's
	// DNSSEC-signed TLSA records).
	Policy              string
	Version             string `json:",omitempty"` // "TLS 1.3"; empty without TLS
	Cipher              string `json:",omitempty"`
	CertificateVerified bool
}

// bounceDetailsJSON are a Bounced event's Details; Postmark's BounceID
// there is a string.
type bounceDetailsJSON struct {
	Summary  string
	BounceID string
}

func addresses(in []store.Address) []MessageAddress {
	out := make([]MessageAddress, 0, len(in))
	for _, a := range in {
		aj := MessageAddress{Email: a.Email}
		if a.Name != "" {
			name := a.Name
			aj.Name = &name
		}
		out = append(out, aj)
	}
	return out
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func messageView(m store.Message) OutboundMessage {
	md := m.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return OutboundMessage{
		Tag:           m.Tag,
		MessageID:     m.MessageID,
		MessageStream: m.MessageStream,
		To:            addresses(m.To),
		Cc:            addresses(m.Cc),
		Bcc:           addresses(m.Bcc),
		Recipients:    nonNil(m.Recipients),
		ReceivedAt:    m.ReceivedAt.UTC(),
		From:          m.From,
		Subject:       m.Subject,
		Attachments:   nonNil(m.Attachments),
		Status:        m.Status,
		TrackOpens:    false,  // Postern tracks no opens
		TrackLinks:    "None", // nor clicks
		Metadata:      md,
	}
}

// statusFilter maps Postmark's status filter to Postern's statuses:
// queued is Queued (a recipient still pending); sent and processed are
// every finished message: Sent, Bounced and Partially sent.
func statusFilter(v string) ([]string, bool) {
	switch strings.ToLower(v) {
	case "":
		return nil, true
	case "queued":
		return []string{store.StatusQueued}, true
	case "sent", "processed":
		return []string{store.StatusSent, store.StatusBounced, store.StatusPartial}, true
	}
	return nil, false
}

// dateParam reads a fromdate or todate parameter: a day (2006-01-02,
// meaning its start for fromdate and its end for todate), a time without
// a zone (2006-01-02T15:04:05) or with one (RFC 3339). Times without a
// zone are UTC.
func dateParam(q url.Values, name string, end bool, code int) (time.Time, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse("2006-01-02", v); err == nil {
		if end {
			return t.Add(24*time.Hour - time.Nanosecond), nil
		}
		return t, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errorf(http.StatusUnprocessableEntity, code, "%s must be a date (2006-01-02) or a time (2006-01-02T15:04:05, UTC unless it has a zone).", name)
}

// dateRange reads fromdate and todate.
func dateRange(r *http.Request, code int) (from, to time.Time, err error) {
	q := r.URL.Query()
	if from, err = dateParam(q, "fromdate", false, code); err != nil {
		return
	}
	if to, err = dateParam(q, "todate", true, code); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		err = errorf(http.StatusUnprocessableEntity, code, "todate must not be before fromdate.")
	}
	return
}

func (a *API) searchMessages(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	count, offset, err := paging(r, codeMessagesQuery, maxPageCount, maxPageTotal)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	from, to, err := dateRange(r, codeMessagesQuery)
	if err != nil {
		return err
	}
	statuses, ok := statusFilter(q.Get("status"))
	if !ok {
		return errorf(http.StatusUnprocessableEntity, codeMessagesQuery, "status must be queued, sent or processed.")
	}
	mq := store.MessageQuery{
		Count: count, Offset: offset,
		Recipient: strings.TrimSpace(q.Get("recipient")),
		FromEmail: strings.TrimSpace(q.Get("fromemail")),
		Tag:       q.Get("tag"),
		Subject:   q.Get("subject"),
		Stream:    q.Get("messagestream"),
		Statuses:  statuses,
		From:      from, To: to,
	}
	// Postmark's metadata_<key>=<value> filters.
	for k, vs := range q {
		if key, ok := strings.CutPrefix(k, "metadata_"); ok && key != "" && len(vs) > 0 {
			if mq.Metadata == nil {
				mq.Metadata = map[string]string{}
			}
			mq.Metadata[key] = vs[0]
		}
	}
	res, err := a.cfg.Store.SearchMessages(srv.ID, mq)
	if err != nil {
		return err
	}
	out := OutboundMessageList{TotalCount: res.Total, TotalCountCapped: res.Capped, Messages: make([]OutboundMessage, 0, len(res.Messages))}
	for _, m := range res.Messages {
		out.Messages = append(out.Messages, messageView(m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// message reads the message named in the path; another server's message
// is not found, exactly as a missing one.
func (a *API) message(r *http.Request, srv store.Server) (store.Message, []byte, error) {
	id := r.PathValue("id")
	m, err := a.cfg.Store.Message(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return m, nil, notFound(codeMessageNotFound, "This message")
	}
	if err != nil {
		return m, nil, err
	}
	raw, err := a.cfg.Store.RawMessage(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		raw, err = nil, nil // purged by retention: metadata without body
	}
	return m, raw, err
}

func (a *API) messageDetails(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	m, raw, err := a.message(r, srv)
	if err != nil {
		return err
	}
	evs, err := a.cfg.Store.Events(srv.ID, m.MessageID)
	if err != nil {
		return err
	}
	body := message.ParseBody(raw)
	out := OutboundMessageDetails{
		OutboundMessage: messageView(m),
		TextBody:        body.Text,
		HtmlBody:        body.HTML,
		Body:            string(raw),
		MessageEvents:   make([]MessageEvent, 0, len(evs)),
	}
	for _, ev := range evs {
		ej := MessageEvent{Recipient: ev.Recipient, Type: ev.Type, ReceivedAt: ev.ReceivedAt.UTC()}
		if ev.Type == store.EventBounced {
			ej.Details = bounceDetailsJSON{Summary: ev.Details.Summary, BounceID: formatID(ev.BounceID)}
		} else {
			dj := deliveryDetailsJSON{
				DeliveryMessage:   ev.Details.DeliveryMessage,
				DestinationServer: ev.Details.DestinationServer,
				DestinationIP:     ev.Details.DestinationIP,
			}
			if ev.Details.TLSPolicy != "" {
				dj.TLS = &TLSDetails{Policy: ev.Details.TLSPolicy, Version: ev.Details.TLS, Cipher: ev.Details.TLSCipher, CertificateVerified: ev.Details.TLSVerified}
			}
			ej.Details = dj
		}
		out.MessageEvents = append(out.MessageEvents, ej)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) messageDump(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	_, raw, err := a.message(r, srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{ Body string }{string(raw)})
	return nil
}
