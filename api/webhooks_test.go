package api_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store"
)

// TestWebhookLifecycle: the Secret is shown once; a webhook paused after a
// day of failures shows so, and PUT resumes it; its calls are listed.
func TestWebhookLifecycle(t *testing.T) {
	e := newEnv(t, envOptions{})
	srv, token := e.LiveServer("hooks")
	status, body := e.server(http.MethodPost, "/webhooks", token, map[string]any{"Url": "https://hooks.example/in",
		"HttpHeaders": []map[string]string{{"Name": "X-App", "Value": "crm"}},
		"Triggers":    map[string]any{"Delivery": map[string]bool{"Enabled": true}, "Bounce": map[string]bool{"Enabled": true, "IncludeContent": true}}})
	var created api.Webhook
	decodeInto(t, status, body, &created)
	if created.Secret == "" || created.MessageStream != "outbound" || !created.Triggers.Bounce.IncludeContent || created.Paused {
		t.Fatalf("created %+v", created)
	}
	path := fmt.Sprintf("/webhooks/%d", created.ID)
	var got api.Webhook
	status, body = e.server(http.MethodGet, path, token, nil)
	decodeInto(t, status, body, &got)
	if got.Secret != "" {
		t.Errorf("the secret is shown again: %s", body)
	}
	for _, bad := range []map[string]any{{"Url": "ftp://hooks.example/"}, {"Url": "https://user:pw@hooks.example/"}, {"Url": "not a url"}, {"Triggers": map[string]any{}, "Url": ""}} {
		status, body = e.server(http.MethodPost, "/webhooks", token, bad)
		wantError(t, status, body, http.StatusUnprocessableEntity, 403)
	}
	status, body = e.server(http.MethodPost, "/webhooks", token, map[string]any{"Url": "https://hooks.example/", "MessageStream": "nope"})
	wantError(t, status, body, http.StatusUnprocessableEntity, 1235)

	// A day of failures pauses it.
	hook, _ := e.Store.Webhook(srv.ID, created.ID)
	hook = store.WebhookCalled(store.WebhookCalled(hook, false, time.Now().Add(-25*time.Hour)), false, time.Now())
	if err := e.Store.UpdateWebhook(hook); err != nil {
		t.Fatal(err)
	}
	status, body = e.server(http.MethodGet, path, token, nil)
	decodeInto(t, status, body, &got)
	if !got.Paused || got.FailingSince == nil {
		t.Errorf("paused webhook shows %+v", got)
	}
	status, body = e.server(http.MethodPut, path, token, map[string]any{"HttpHeaders": []map[string]string{}})
	got = api.Webhook{} // absent fields must not keep the last answer's values
	decodeInto(t, status, body, &got)
	if got.Paused || got.FailingSince != nil || len(got.HttpHeaders) != 0 || got.Url != "https://hooks.example/in" || !got.Triggers.Delivery.Enabled {
		t.Errorf("after PUT: %+v", got)
	}

	if err := e.Store.FinishWebhookDelivery(store.WebhookDelivery{WebhookID: created.ID, ServerID: srv.ID, Due: time.Now()},
		store.WebhookAttempt{WebhookID: created.ID, At: time.Now(), Trigger: "Delivery", TraceID: "t-1", Status: 503, Duration: 1500 * time.Millisecond, Error: "the receiver answered 503"}, nil); err != nil {
		t.Fatal(err)
	}
	var calls api.WebhookDeliveryList
	status, body = e.server(http.MethodGet, path+"/deliveries", token, nil)
	decodeInto(t, status, body, &calls)
	if calls.TotalCount != 1 || calls.Deliveries[0].Status != 503 || calls.Deliveries[0].DurationMs != 1500 || calls.Deliveries[0].TraceID != "t-1" {
		t.Errorf("deliveries %+v", calls)
	}

	status, body = e.server(http.MethodDelete, path, token, nil)
	var deleted api.Error
	decodeInto(t, status, body, &deleted)
	status, body = e.server(http.MethodGet, path, token, nil)
	wantError(t, status, body, http.StatusNotFound, 1400)
}
