package store_test

import (
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func TestTLSReportDayAddCapsFailureKinds(t *testing.T) {
	var d store.TLSReportDay
	ref := store.TLSPolicyRef{Type: store.TLSPolicyNotFound}
	for i := range store.MaxTLSFailureKinds + 10 {
		d.Add(store.TLSResult{Policy: ref, Failure: &store.TLSFailure{ResultType: "validation-failure", ReceivingIP: string(rune('a' + i))}, Count: 1})
	}
	if p := d.Policies[0]; p.Failure != int64(store.MaxTLSFailureKinds+10) || len(p.Failures) != store.MaxTLSFailureKinds {
		t.Errorf("failures %d in %d kinds, want %d in %d", p.Failure, len(p.Failures), store.MaxTLSFailureKinds+10, store.MaxTLSFailureKinds)
	}
}

func TestWebhookCalled(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	w := store.WebhookCalled(store.Webhook{}, false, t0)
	if !w.FailingSince.Equal(t0) || w.Paused {
		t.Fatalf("first failure: %+v", w)
	}
	if w = store.WebhookCalled(w, false, t0.Add(23*time.Hour)); w.Paused || !w.FailingSince.Equal(t0) {
		t.Fatalf("failing 23 hours: %+v", w)
	}
	if w = store.WebhookCalled(w, false, t0.Add(24*time.Hour)); !w.Paused {
		t.Fatalf("failing 24 hours: %+v, want paused", w)
	}
	if w = store.WebhookCalled(store.Webhook{FailingSince: t0}, true, t0.Add(time.Hour)); !w.FailingSince.IsZero() {
		t.Fatalf("a success: %+v", w)
	}
}
