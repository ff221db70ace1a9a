package store_test

import (
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func TestAcceptQueuesLiveAndDeliversSandbox(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	msg := store.Message{MessageID: "m1", ServerID: 7, Recipients: []string{"a@example.net", "b@example.net"}, ReceivedAt: at}
	raw := []byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\r\n%PDF\r\n--x--\r\n")

	live := store.Accept(store.Server{ID: 7, DeliveryType: store.DeliveryLive}, msg, raw)
	if live.Entry == nil || live.Entry.Due != at || len(live.Entry.Pending) != 2 || live.Events != nil ||
		live.Message.Status != store.StatusQueued || len(live.Message.Attachments) != 1 || live.Message.Attachments[0] != "r.pdf" {
		t.Fatalf("live: %+v entry %+v", live.Message, live.Entry)
	}
	sandbox := store.Accept(store.Server{ID: 7, DeliveryType: store.DeliverySandbox}, msg, raw)
	if sandbox.Entry != nil || len(sandbox.Events) != 2 || sandbox.Message.Status != store.StatusSent ||
		sandbox.Message.RecipientStatus["b@example.net"] != store.EventDelivered || sandbox.Events[0].Details.DeliveryMessage != store.SandboxDelivery {
		t.Fatalf("sandbox: %+v events %+v", sandbox.Message, sandbox.Events)
	}
	if msg.Status != "" || msg.RecipientStatus != nil {
		t.Fatalf("Accept changed its argument: %+v", msg)
	}
}

func TestResolveAttempt(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	msg := store.Message{MessageID: "m1", ServerID: 7, From: "App <app@example.com>", Tag: "t", Recipients: []string{"a@x", "b@x", "c@x"}, Status: store.StatusQueued}
	entry := store.QueueEntry{ServerID: 7, MessageID: "m1", Pending: msg.Recipients, Attempts: 0}
	a := store.Attempt{Entry: entry, At: at, Retry: at.Add(time.Minute), Outcomes: []store.Outcome{
		{Recipient: "A@x", Type: store.EventDelivered},
		{Recipient: "b@x", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{BounceType: "HardBounce", BounceTypeCode: 1}},
		{Recipient: "c@x", Type: store.EventTransient},
	}}
	res, err := store.ResolveAttempt(msg, a)
	if err != nil {
		t.Fatal(err)
	}
	if res.Message.Status != store.StatusQueued || res.Next == nil || len(res.Next.Pending) != 1 || res.Next.Pending[0] != "c@x" ||
		res.Next.Attempts != 1 || !res.Next.Due.Equal(a.Retry) {
		t.Fatalf("pending c@x: status %q next %+v", res.Message.Status, res.Next)
	}
	if len(res.Events) != 3 || res.Events[1].Bounce == nil || res.Events[1].Bounce.From != "app@example.com" || res.Events[0].Bounce != nil {
		t.Fatalf("events %+v", res.Events)
	}
	if len(res.Suppressions) != 1 || res.Suppressions[0].Email != "b@x" || len(res.Counters) != 1 || res.Counters[0] != "HardBounce" {
		t.Fatalf("suppressions %+v counters %v", res.Suppressions, res.Counters)
	}
	if msg.RecipientStatus != nil {
		t.Fatalf("ResolveAttempt changed its argument: %+v", msg.RecipientStatus)
	}

	// The last recipient bounces: some delivered, some bounced.
	a2 := store.Attempt{Entry: *res.Next, At: at.Add(time.Minute), Outcomes: []store.Outcome{{Recipient: "c@x", Type: store.EventBounced}}}
	res2, err := store.ResolveAttempt(res.Message, a2)
	if err != nil || res2.Next != nil || res2.Message.Status != store.StatusPartial || res2.Events[0].Bounce.Type != "Unknown" || res2.Counters[0] != "Unknown" {
		t.Fatalf("last: %+v %v", res2, err)
	}
	// Recipients left pending need a time to retry them.
	a3 := a
	a3.Retry = time.Time{}
	if _, err := store.ResolveAttempt(msg, a3); err == nil {
		t.Fatal("pending recipients without a retry time: no error")
	}
}
