package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/store"
)

func (a *API) registerWebhooks() {
	a.mux.HandleFunc("GET /webhooks", a.server(a.listWebhooks))
	a.mux.HandleFunc("POST /webhooks", a.server(a.createWebhook))
	a.mux.HandleFunc("GET /webhooks/{id}", a.server(a.getWebhook))
	a.mux.HandleFunc("PUT /webhooks/{id}", a.server(a.editWebhook))
	a.mux.HandleFunc("DELETE /webhooks/{id}", a.server(a.deleteWebhook))
	a.mux.HandleFunc("GET /webhooks/{id}/deliveries", a.server(a.webhookDeliveries))
}

// Webhook is a webhook in Postmark's shape, with Postern's Secret (on
// creation only), Paused and FailingSince.
type Webhook struct {
	ID            int64
	Url           string
	MessageStream string
	HttpAuth      *WebhookAuth
	HttpHeaders   []NameValue
	Triggers      WebhookTriggers
	Secret        string     `json:",omitempty"`
	Paused        bool       // failing for 24 hours; PUT resumes it
	FailingSince  *time.Time `json:",omitempty"`
}

// WebhookAuth is HTTP basic authentication for the calls.
type WebhookAuth struct{ Username, Password string }

// WebhookTriggers are Postmark's triggers.
type WebhookTriggers struct {
	Open               OpenTrigger
	Click              Trigger
	Delivery           Trigger
	Bounce             ContentTrigger
	SpamComplaint      ContentTrigger
	SubscriptionChange Trigger
}

// Trigger is one event's switch.
type Trigger struct{ Enabled bool }

// OpenTrigger is the Open trigger's switch.
type OpenTrigger struct{ Enabled, PostFirstOpenOnly bool }

// ContentTrigger also says whether the payload holds the content.
type ContentTrigger struct{ Enabled, IncludeContent bool }

// WebhookList is the answer of GET /webhooks.
type WebhookList struct{ Webhooks []Webhook }

// WebhookDeliveryList is the answer of GET /webhooks/{id}/deliveries.
type WebhookDeliveryList struct {
	TotalCount int
	Deliveries []WebhookCall
}

// WebhookCall is one call made.
type WebhookCall struct {
	At         time.Time
	Trigger    string
	TraceID    string
	Status     int // 0 when no answer came
	DurationMs int64
	Error      string `json:",omitempty"`
}

// webhookRequest is the body of POST and PUT; absent fields stay.
type webhookRequest struct {
	Url           *string
	MessageStream *string
	HttpAuth      *WebhookAuth
	HttpHeaders   *[]NameValue
	Triggers      *WebhookTriggers
}

const codeWebhookNotFound = 1400

func webhookView(w store.Webhook) Webhook {
	out := Webhook{ID: w.ID, Url: w.URL, MessageStream: w.MessageStream, HttpHeaders: []NameValue{}, Paused: w.Paused,
		Triggers: WebhookTriggers{
			Open:               OpenTrigger{Enabled: w.Triggers.Open},
			Click:              Trigger{w.Triggers.Click},
			Delivery:           Trigger{w.Triggers.Delivery},
			Bounce:             ContentTrigger{w.Triggers.Bounce, w.Triggers.BounceContent},
			SpamComplaint:      ContentTrigger{w.Triggers.SpamComplaint, w.Triggers.SpamContent},
			SubscriptionChange: Trigger{w.Triggers.SubscriptionChange},
		}}
	if w.HTTPAuth != nil {
		out.HttpAuth = &WebhookAuth{w.HTTPAuth.Username, w.HTTPAuth.Password}
	}
	for _, h := range w.HTTPHeaders {
		out.HttpHeaders = append(out.HttpHeaders, NameValue{h.Name, h.Value})
	}
	if !w.FailingSince.IsZero() {
		t := w.FailingSince.UTC()
		out.FailingSince = &t
	}
	return out
}

// apply validates req and applies it to w.
func (a *API) applyWebhook(r *http.Request, srv store.Server, req webhookRequest, w *store.Webhook, creating bool) error {
	if req.Url != nil {
		u, err := url.Parse(strings.TrimSpace(*req.Url))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return unprocessable(codeInvalidField, "Url must be an absolute http or https URL, without credentials (use HttpAuth), got %q.", *req.Url)
		}
		if a.cfg.CheckWebhookURL != nil {
			if err := a.cfg.CheckWebhookURL(r.Context(), u); err != nil {
				return unprocessable(codeInvalidField, "Url %s is refused: %v.", u, err)
			}
		}
		w.URL = u.String()
	} else if creating {
		return unprocessable(codeInvalidField, "Url is required.")
	}
	if req.MessageStream != nil {
		if !creating && *req.MessageStream != w.MessageStream {
			return unprocessable(codeInvalidField, "A webhook's MessageStream cannot change; create another webhook.")
		}
		if _, err := a.stream(srv, *req.MessageStream); err != nil {
			return unprocessable(codeStreamNotFound, "The message stream %q was not found on this server.", *req.MessageStream)
		}
		w.MessageStream = *req.MessageStream
	}
	if req.HttpAuth != nil {
		w.HTTPAuth = nil
		if req.HttpAuth.Username != "" || req.HttpAuth.Password != "" {
			w.HTTPAuth = &store.WebhookAuth{Username: req.HttpAuth.Username, Password: req.HttpAuth.Password}
		}
	}
	if req.HttpHeaders != nil {
		w.HTTPHeaders = nil
		for _, h := range *req.HttpHeaders {
			if err := message.CheckHeader(message.HeaderField{Name: h.Name, Value: h.Value}); err != nil && !strings.Contains(err.Error(), "set by its own field") {
				return unprocessable(codeInvalidField, "HttpHeaders: %v.", err)
			}
			w.HTTPHeaders = append(w.HTTPHeaders, store.WebhookHeader{Name: h.Name, Value: h.Value})
		}
	}
	if t := req.Triggers; t != nil {
		w.Triggers = store.WebhookTriggers{
			Open: t.Open.Enabled, Click: t.Click.Enabled, Delivery: t.Delivery.Enabled,
			Bounce: t.Bounce.Enabled, BounceContent: t.Bounce.IncludeContent,
			SpamComplaint: t.SpamComplaint.Enabled, SpamContent: t.SpamComplaint.IncludeContent,
			SubscriptionChange: t.SubscriptionChange.Enabled,
		}
	}
	return nil
}

func (a *API) listWebhooks(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	hooks, err := a.cfg.Store.ListWebhooks(srv.ID, r.URL.Query().Get("MessageStream"))
	if err != nil {
		return err
	}
	out := WebhookList{Webhooks: make([]Webhook, len(hooks))}
	for i, h := range hooks {
		out.Webhooks[i] = webhookView(h)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createWebhook(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	var req webhookRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	hook := store.Webhook{ServerID: srv.ID, MessageStream: store.DefaultStreamID, CreatedAt: a.cfg.Now().UTC()}
	if err := a.applyWebhook(r, srv, req, &hook, true); err != nil {
		return err
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	hook.Secret = hex.EncodeToString(secret)
	hook, err := a.cfg.Store.CreateWebhook(hook)
	if errors.Is(err, store.ErrServerMissing) {
		return serverNotFound()
	}
	if err != nil {
		return err
	}
	out := webhookView(hook)
	out.Secret = hook.Secret // shown this once
	writeJSON(w, http.StatusOK, out)
	return nil
}

// webhook reads the {id} of the path, the server's own only.
func (a *API) webhook(r *http.Request, srv store.Server) (store.Webhook, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Webhook{}, notFound(codeWebhookNotFound, "Webhook")
	}
	hook, err := a.cfg.Store.Webhook(srv.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		return hook, notFound(codeWebhookNotFound, "Webhook")
	}
	return hook, err
}

func (a *API) getWebhook(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	hook, err := a.webhook(r, srv)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(hook))
	return nil
}

// editWebhook serves PUT /webhooks/{id}; it also resumes a paused
// webhook.
func (a *API) editWebhook(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	hook, err := a.webhook(r, srv)
	if err != nil {
		return err
	}
	var req webhookRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if err := a.applyWebhook(r, srv, req, &hook, false); err != nil {
		return err
	}
	hook.Paused, hook.FailingSince = false, time.Time{}
	if err := a.cfg.Store.UpdateWebhook(hook); errors.Is(err, store.ErrNotFound) {
		return notFound(codeWebhookNotFound, "Webhook")
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, webhookView(hook))
	return nil
}

func (a *API) deleteWebhook(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	hook, err := a.webhook(r, srv)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteWebhook(srv.ID, hook.ID); errors.Is(err, store.ErrNotFound) {
		return notFound(codeWebhookNotFound, "Webhook")
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("Webhook %d removed.", hook.ID)})
	return nil
}

func (a *API) webhookDeliveries(w http.ResponseWriter, r *http.Request, srv store.Server) error {
	hook, err := a.webhook(r, srv)
	if err != nil {
		return err
	}
	log, err := a.cfg.Store.WebhookAttempts(srv.ID, hook.ID)
	if err != nil {
		return err
	}
	out := WebhookDeliveryList{TotalCount: len(log), Deliveries: make([]WebhookCall, len(log))}
	for i, c := range log {
		out.Deliveries[i] = WebhookCall{At: c.At.UTC(), Trigger: c.Trigger, TraceID: c.TraceID, Status: c.Status, DurationMs: c.Duration.Milliseconds(), Error: c.Error}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
