package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func testStreams(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Now().UTC().Truncate(time.Millisecond)
	news := store.Stream{ServerID: a.ID, ID: "newsletter", Name: "Newsletter", Type: store.StreamBroadcasts, UnsubscribeHandling: "Postmark", CreatedAt: now}
	if err := s.CreateStream(news); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateStream(news); !errors.Is(err, store.ErrStreamExists) {
		t.Errorf("the same ID twice: %v, want ErrStreamExists", err)
	}
	other := news
	other.ServerID = b.ID
	if err := s.CreateStream(other); err != nil {
		t.Errorf("the same ID on another server: %v", err)
	}
	if err := s.CreateStream(store.Stream{ServerID: 9999, ID: "x"}); !errors.Is(err, store.ErrServerMissing) {
		t.Errorf("a stream of no server: %v", err)
	}
	news.Description, news.UpdatedAt = "weekly", now.Add(time.Minute)
	if err := s.UpdateStream(news); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateStream(store.Stream{ServerID: a.ID, ID: "missing"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a missing stream: %v", err)
	}
	s = h.Reopen(t, s)
	if got, err := s.Stream(a.ID, "newsletter"); err != nil || got.Description != "weekly" || got.Type != store.StreamBroadcasts || !got.CreatedAt.Equal(now) {
		t.Errorf("stream %+v, %v", got, err)
	}
	if _, err := s.Stream(a.ID, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a missing stream: %v", err)
	}
	if list, err := s.ListStreams(a.ID); err != nil || len(list) != 1 || list[0].ID != "newsletter" {
		t.Errorf("list %+v, %v", list, err)
	}

	// Suppressions in one stream only, and an unsubscribe's webhook call
	// in the same transaction.
	if _, err := s.CreateWebhook(store.Webhook{ServerID: a.ID, URL: "https://hooks.example/a", MessageStream: "newsletter",
		Triggers: store.WebhookTriggers{SubscriptionChange: true}}); err != nil {
		t.Fatal(err)
	}
	change := &store.SubscriptionChange{ServerID: a.ID, Stream: "newsletter", MessageID: "m-1", Recipient: "Reader@example.net", ChangedAt: now, Tag: "weekly"}
	if err := s.SuppressInStream([]store.StreamSuppression{{ServerID: a.ID, Stream: "newsletter", Email: "Reader@example.net",
		Reason: store.ReasonManual, Origin: store.OriginRecipient, CreatedAt: now}}, change); err != nil {
		t.Fatal(err)
	}
	if err := s.SuppressInStream([]store.StreamSuppression{{ServerID: a.ID, Stream: "newsletter", Email: "manual@example.net",
		Reason: store.ReasonManual, Origin: store.OriginCustomer, CreatedAt: now}}, nil); err != nil {
		t.Fatal(err)
	}
	if sup, ok, err := s.StreamSuppressed(a.ID, "newsletter", "reader@EXAMPLE.net"); err != nil || !ok || sup.Origin != store.OriginRecipient {
		t.Errorf("suppressed: %+v, %v, %v", sup, ok, err)
	}
	for _, c := range []struct {
		server int64
		stream string
	}{{a.ID, "outbound"}, {b.ID, "newsletter"}} {
		if _, ok, err := s.StreamSuppressed(c.server, c.stream, "reader@example.net"); ok || err != nil {
			t.Errorf("server %d stream %s: suppressed %v, %v; want only in the one stream", c.server, c.stream, ok, err)
		}
	}
	calls, _ := s.ClaimWebhookDeliveries(now, time.Minute, 10)
	var p map[string]any
	if len(calls) != 1 || calls[0].Trigger != store.SubscriptionEvent || json.Unmarshal(calls[0].Payload, &p) != nil ||
		p["RecordType"] != "SubscriptionChange" || p["Recipient"] != "Reader@example.net" || p["SuppressSending"] != true || p["MessageStream"] != "newsletter" {
		t.Errorf("the unsubscribe's call: %+v %v", calls, p)
	}
	if list, err := s.StreamSuppressions(a.ID, "newsletter"); err != nil || len(list) != 2 {
		t.Errorf("suppressions %+v, %v", list, err)
	}
	if err := s.UnsuppressInStream(a.ID, "newsletter", []string{"MANUAL@example.net"}); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.StreamSuppressions(a.ID, "newsletter"); len(list) != 1 || list[0].Email != "reader@example.net" {
		t.Errorf("after a delete: %+v", list)
	}

	k1, err := s.InstallationKey()
	if err != nil || len(k1) < 32 {
		t.Fatalf("key %x, %v", k1, err)
	}
	s = h.Reopen(t, s)
	if k2, err := s.InstallationKey(); err != nil || !bytes.Equal(k1, k2) {
		t.Errorf("the key changed across a reopen: %v", err)
	}
}
