package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testWebhooks(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Now().UTC().Truncate(time.Millisecond)
	w, err := s.CreateWebhook(store.Webhook{ServerID: a.ID, URL: "https://hooks.example/a", MessageStream: "outbound", Secret: "s3cret",
		HTTPAuth: &store.WebhookAuth{Username: "u", Password: "p"}, Triggers: store.WebhookTriggers{Delivery: true, Bounce: true, BounceContent: true}, CreatedAt: now})
	if err != nil || w.ID == 0 {
		t.Fatalf("create: %+v, %v", w, err)
	}
	other, err := s.CreateWebhook(store.Webhook{ServerID: b.ID, URL: "https://hooks.example/b", MessageStream: "outbound", Triggers: store.WebhookTriggers{Delivery: true}})
	if err != nil || other.ID == w.ID {
		t.Fatalf("second: %+v, %v", other, err)
	}
	if _, err := s.CreateWebhook(store.Webhook{ServerID: 9999, URL: "https://x.example"}); !errors.Is(err, store.ErrServerMissing) {
		t.Errorf("a webhook of no server: %v, want ErrServerMissing", err)
	}
	if _, err := s.Webhook(b.ID, w.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another server's webhook: %v, want ErrNotFound", err)
	}
	if list, err := s.ListWebhooks(a.ID, ""); err != nil || len(list) != 1 || list[0].URL != w.URL || list[0].HTTPAuth.Password != "p" {
		t.Errorf("list: %+v, %v", list, err)
	}
	if list, _ := s.ListWebhooks(a.ID, "broadcasts"); len(list) != 0 {
		t.Errorf("list of another stream: %+v", list)
	}
	w.URL = "https://hooks.example/a2"
	if err := s.UpdateWebhook(w); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateWebhook(store.Webhook{ID: w.ID, ServerID: b.ID}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update through another server: %v", err)
	}

	// An attempt's events go to the outbox in the same transaction.
	ids := enqueueN(t, s, a.ID, 1, now, "ok@example.net", "gone@example.org")
	got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1})
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Outcomes: []store.Outcome{
		{Recipient: "ok@example.net", Type: store.EventDelivered, Details: store.EventDetails{DeliveryMessage: "250 2.0.0 ok"}},
		{Recipient: "gone@example.org", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{DeliveryMessage: "550 5.1.1 no such user", BounceType: "HardBounce", BounceTypeCode: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	s = h.Reopen(t, s)
	if n, err := s.WebhookOutboxDepth(); err != nil || n != 2 {
		t.Fatalf("outbox depth %d, %v; want 2", n, err)
	}
	calls, err := s.ClaimWebhookDeliveries(now, time.Minute, 10)
	if err != nil || len(calls) != 2 {
		t.Fatalf("claimed %+v, %v", calls, err)
	}
	byTrigger := map[string]store.WebhookDelivery{}
	for _, c := range calls {
		byTrigger[c.Trigger] = c
		if c.WebhookID != w.ID || c.ServerID != a.ID || c.TraceID == "" || c.Attempts != 0 {
			t.Errorf("call %+v", c)
		}
	}
	var delivery map[string]any
	json.Unmarshal(byTrigger[store.TriggerDelivery].Payload, &delivery)
	if delivery["RecordType"] != "Delivery" || delivery["MessageID"] != ids[0] || delivery["Recipient"] != "ok@example.net" || delivery["Details"] != "250 2.0.0 ok" {
		t.Errorf("Delivery payload %v", delivery)
	}
	var bounce map[string]any
	json.Unmarshal(byTrigger[store.TriggerBounce].Payload, &bounce)
	if bounce["RecordType"] != "Bounce" || bounce["Type"] != "HardBounce" || bounce["TypeCode"] != 1.0 || bounce["Email"] != "gone@example.org" ||
		bounce["ID"] == 0.0 || bounce["Inactive"] != true || bounce["Content"] != "550 5.1.1 no such user" || bounce["Name"] != "Hard bounce" {
		t.Errorf("Bounce payload %v", bounce)
	}
	// Leased: not claimed again until the lease ends.
	if again, _ := s.ClaimWebhookDeliveries(now, time.Minute, 10); len(again) != 0 {
		t.Errorf("claimed again while leased: %+v", again)
	}
	// One call fails and is due again; the other is done.
	retry := now.Add(time.Minute)
	failed := byTrigger[store.TriggerBounce]
	failed.Attempts++
	if err := s.FinishWebhookDelivery(failed, store.WebhookAttempt{WebhookID: w.ID, At: now, Trigger: failed.Trigger, TraceID: failed.TraceID, Status: 500}, &retry); err != nil {
		t.Fatal(err)
	}
	done := byTrigger[store.TriggerDelivery]
	if err := s.FinishWebhookDelivery(done, store.WebhookAttempt{WebhookID: w.ID, At: now.Add(time.Second), Trigger: done.Trigger, TraceID: done.TraceID, Status: 200}, nil); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.WebhookOutboxDepth(); n != 1 {
		t.Errorf("outbox depth %d, want the one to retry", n)
	}
	again, _ := s.ClaimWebhookDeliveries(retry, time.Minute, 10)
	if len(again) != 1 || again[0].TraceID != failed.TraceID || again[0].Attempts != 1 {
		t.Errorf("the retry: %+v", again)
	}
	log, err := s.WebhookAttempts(a.ID, w.ID)
	if err != nil || len(log) != 2 || log[0].Status != 200 || log[1].Status != 500 {
		t.Errorf("attempts %+v, %v; want newest first", log, err)
	}
	if _, err := s.WebhookAttempts(b.ID, w.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another server's log: %v", err)
	}
	if err := s.DeleteWebhook(a.ID, w.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.WebhookOutboxDepth(); n != 0 {
		t.Errorf("a deleted webhook's calls stay: %d", n)
	}
	if err := s.DeleteWebhook(a.ID, w.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted twice: %v", err)
	}
}

func testWebhookPausedAfterADayOfFailures(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now().UTC()
	w, err := s.CreateWebhook(store.Webhook{ServerID: a.ID, URL: "https://hooks.example/a", MessageStream: "outbound", Triggers: store.WebhookTriggers{Delivery: true}})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(at time.Time) {
		t.Helper()
		enqueueN(t, s, a.ID, 1, at, "ok@example.net")
		got, _ := s.Claim(store.ClaimRequest{Now: at, Lease: time.Minute, Max: 1})
		if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: at, Outcomes: []store.Outcome{{Recipient: "ok@example.net", Type: store.EventDelivered}}}); err != nil {
			t.Fatal(err)
		}
	}
	deliver(now)
	for i, at := range []time.Time{now, now.Add(25 * time.Hour)} {
		calls, _ := s.ClaimWebhookDeliveries(at, time.Minute, 1)
		if len(calls) != 1 {
			if i == 1 {
				deliver(at)
				calls, _ = s.ClaimWebhookDeliveries(at, time.Minute, 1)
			}
			if len(calls) != 1 {
				t.Fatalf("call %d: %+v", i, calls)
			}
		}
		if err := s.FinishWebhookDelivery(calls[0], store.WebhookAttempt{WebhookID: w.ID, At: at, Status: 503}, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Webhook(a.ID, w.ID)
	if !got.Paused || !got.FailingSince.Equal(now) {
		t.Fatalf("after a day of failures: %+v, want paused", got)
	}
	// A paused webhook gets no more calls.
	deliver(now.Add(26 * time.Hour))
	if n, _ := s.WebhookOutboxDepth(); n != 0 {
		t.Errorf("a paused webhook got %d calls", n)
	}
}

func testWebhookLeasesComeBack(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now().UTC()
	if _, err := s.CreateWebhook(store.Webhook{ServerID: a.ID, URL: "https://hooks.example/a", MessageStream: "outbound", Triggers: store.WebhookTriggers{Delivery: true}}); err != nil {
		t.Fatal(err)
	}
	enqueueN(t, s, a.ID, 1, now, "ok@example.net")
	got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1})
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Outcomes: []store.Outcome{{Recipient: "ok@example.net", Type: store.EventDelivered}}}); err != nil {
		t.Fatal(err)
	}
	calls, _ := s.ClaimWebhookDeliveries(now, time.Hour, 10)
	if len(calls) != 1 || !calls[0].Leased {
		t.Fatalf("claimed %+v", calls)
	}
	// The process dies with the call in flight, and starts again.
	s = h.Reopen(t, s)
	later := now.Add(time.Second)
	if n, err := s.ReleaseWebhookLeases(later); err != nil || n != 1 {
		t.Fatalf("released %d, %v; want 1", n, err)
	}
	again, _ := s.ClaimWebhookDeliveries(later, time.Hour, 10)
	if len(again) != 1 || again[0].TraceID != calls[0].TraceID {
		t.Errorf("after the release: %+v, want the same call", again)
	}
}
