package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

func enqueueN(t *testing.T, s store.Backend, serverID int64, n int, at time.Time, rcpts ...string) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		m := NewMessage(serverID, at)
		if len(rcpts) > 0 {
			m.Recipients = rcpts
		}
		if err := Enqueue(s, m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.MessageID)
	}
	return ids
}

func secondServer(t *testing.T, s store.Backend, accountID int64, name string) store.Server {
	t.Helper()
	srv, err := s.CreateServer(store.Server{AccountID: accountID, Name: name, DeliveryType: store.DeliveryLive, SmtpApiActivated: true}, Token(name), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func testClaimRotatesAcrossServers(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Now()
	enqueueN(t, s, a.ID, 500, now.Add(-time.Minute))
	bIDs := enqueueN(t, s, b.ID, 1, now)
	got, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ServerID == got[1].ServerID {
		t.Fatalf("claimed %+v, want one of each server", got)
	}
	found := false
	for _, e := range got {
		found = found || e.MessageID == bIDs[0]
		if !e.Leased || !e.Due.Equal(now.Add(time.Minute)) {
			t.Fatalf("entry not leased: %+v", e)
		}
	}
	if !found {
		t.Fatal("B's message not claimed")
	}
	// Rotation: starting after A, B comes first (nothing left there), then A.
	more, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10, After: a.ID})
	if err != nil || len(more) != 10 {
		t.Fatalf("claimed %d, %v", len(more), err)
	}
}

func testClaimRespectsAllowAndDueTime(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Now()
	enqueueN(t, s, a.ID, 5, now)
	enqueueN(t, s, b.ID, 5, now)
	enqueueN(t, s, b.ID, 5, now.Add(time.Hour)) // not due
	got, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 100, Allow: func(id int64) int {
		if id == a.ID {
			return 2
		}
		return 100
	}})
	if err != nil {
		t.Fatal(err)
	}
	perServer := map[int64]int{}
	for _, e := range got {
		perServer[e.ServerID]++
	}
	if perServer[a.ID] != 2 || perServer[b.ID] != 5 {
		t.Fatalf("claimed per server %v, want A 2, B 5", perServer)
	}
}

func testClaimTakeSkipsRefusedEntries(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now()
	full := enqueueN(t, s, a.ID, 3, now.Add(-2*time.Minute), "bob@full.example")
	open := enqueueN(t, s, a.ID, 2, now.Add(-time.Minute), "alice@open.example")
	takeOpen := func(e store.QueueEntry, taken []store.QueueEntry) bool { return e.Pending[0] != "bob@full.example" }
	got, err := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10, Take: takeOpen})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].MessageID != open[0] || got[1].MessageID != open[1] {
		t.Fatalf("claimed %+v, want the two open.example entries", got)
	}
	q, err := s.Queue(100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q {
		if e.Pending[0] == "bob@full.example" && (e.Leased || e.Due.After(now)) {
			t.Fatalf("a refused entry changed: %+v", e)
		}
	}
	// Take sees what this claim has taken: one at most.
	one := func(e store.QueueEntry, taken []store.QueueEntry) bool { return len(taken) == 0 }
	if got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10, Take: one}); len(got) != 1 || got[0].MessageID != full[0] {
		t.Fatalf("claimed %+v, want only %s", got, full[0])
	}

	// A backlog for a full destination does not hide what is behind it:
	// past ClaimSkipMax refused entries at the head, the scan goes on from
	// where the previous claim stopped, so each claim looks further.
	b := secondServer(t, s, a.AccountID, "B")
	enqueueN(t, s, b.ID, 3*store.ClaimSkipMax+5, now.Add(-2*time.Minute), "bob@full.example")
	behind := enqueueN(t, s, b.ID, 1, now.Add(-time.Minute), "alice@open.example")
	onlyB := func(id int64) int {
		if id == b.ID {
			return 10
		}
		return 0
	}
	req := store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10, Allow: onlyB, Take: takeOpen}
	claims := 0
	got = nil
	for len(got) == 0 && claims < 10 {
		got, err = s.Claim(req)
		if err != nil {
			t.Fatal(err)
		}
		claims++
	}
	// 53 refused entries ahead: each claim looks at the head's 16, then
	// 16 further on than the claim before.
	if len(got) != 1 || got[0].MessageID != behind[0] || claims != 3 {
		t.Fatalf("after %d claims: %+v, want %s at the third", claims, got, behind[0])
	}
	q, err = s.Queue(1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q {
		if e.ServerID == b.ID && e.Pending[0] == "bob@full.example" && (e.Leased || e.Due.After(now)) {
			t.Fatalf("a refused entry changed: %+v", e)
		}
	}
	// The scan came to the end of the due entries: the next claim's
	// second window starts at the head again, and still finds nothing.
	if got, _ := s.Claim(req); len(got) != 0 {
		t.Fatalf("claimed %+v", got)
	}
}

func testLeasesComeBack(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now()
	enqueueN(t, s, a.ID, 3, now)
	got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 3})
	if len(got) != 3 {
		t.Fatalf("claimed %d", len(got))
	}
	if again, _ := s.Claim(store.ClaimRequest{Now: now.Add(30 * time.Second), Lease: time.Minute, Max: 3}); len(again) != 0 {
		t.Fatalf("claimed %d leased entries", len(again))
	}
	if again, _ := s.Claim(store.ClaimRequest{Now: now.Add(61 * time.Second), Lease: time.Minute, Max: 1}); len(again) != 1 {
		t.Fatalf("expired lease: claimed %d, want 1", len(again))
	}
	n, err := s.ReleaseLeases(now)
	if err != nil || n != 3 {
		t.Fatalf("released %d, %v", n, err)
	}
	if again, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 10}); len(again) != 3 {
		t.Fatalf("after release: claimed %d, want 3", len(again))
	}
}

func testRecordAttempt(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	now := time.Now()
	ids := enqueueN(t, s, a.ID, 1, now, "ok@example.net", "later@example.net", "gone@example.org")
	got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1})
	bounce := store.EventDetails{DeliveryMessage: "550 5.1.1 no such user", BounceType: "HardBounce", BounceTypeCode: 1, DestinationServer: "mx.example.org"}
	err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Retry: now.Add(5 * time.Minute), Signature: []byte("DKIM-Signature: x\r\n"), Signed: true, Outcomes: []store.Outcome{
		{Recipient: "ok@example.net", Type: store.EventDelivered, Details: store.EventDetails{DeliveryMessage: "250 2.0.0 ok", DestinationIP: "127.0.0.1"}},
		{Recipient: "later@example.net", Type: store.EventTransient, Details: store.EventDetails{DeliveryMessage: "450 4.2.0 busy"}},
		{Recipient: "Gone@example.org", Type: store.EventBounced, Details: bounce, Inactivate: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.Message(a.ID, ids[0])
	if m.Status != store.StatusQueued || m.RecipientStatus["ok@example.net"] != store.EventDelivered {
		t.Fatalf("message %+v", m)
	}
	evs, err := s.Events(a.ID, ids[0])
	if err != nil || len(evs) != 3 || evs[0].Type != store.EventDelivered || evs[2].Details.BounceType != "HardBounce" {
		t.Fatalf("events %+v %v", evs, err)
	}
	if other, _ := s.Events(b.ID, ids[0]); len(other) != 0 {
		t.Fatalf("another server sees events: %+v", other)
	}
	sup, ok, err := s.Suppressed(a.ID, "gone@EXAMPLE.org")
	if err != nil || !ok || sup.Reason != "HardBounce" || sup.MessageID != ids[0] {
		t.Fatalf("suppression %+v %v %v", sup, ok, err)
	}
	if _, ok, _ := s.Suppressed(b.ID, "gone@example.org"); ok {
		t.Fatal("suppression leaked to another server")
	}
	q, _ := s.Queue(10)
	if len(q) != 1 || q[0].Leased || q[0].Attempts != 1 || fmt.Sprint(q[0].Pending) != "[later@example.net]" ||
		!q[0].Due.Equal(now.Add(5*time.Minute)) || string(q[0].Signature) != "DKIM-Signature: x\r\n" {
		t.Fatalf("requeued %+v", q)
	}
	// The retry delivers the last recipient: the entry goes, the status
	// says some were delivered and some bounced.
	got, _ = s.Claim(store.ClaimRequest{Now: now.Add(5 * time.Minute), Lease: time.Minute, Max: 1})
	if len(got) != 1 {
		t.Fatalf("retry not claimed: %+v", got)
	}
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Outcomes: []store.Outcome{{Recipient: "later@example.net", Type: store.EventDelivered}}}); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.Queue(10); len(q) != 0 {
		t.Fatalf("queue %+v", q)
	}
	if m, _ := s.Message(a.ID, ids[0]); m.Status != store.StatusPartial {
		t.Fatalf("status %q", m.Status)
	}
	// Recording the same claim twice fails: its entry is gone.
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second record: %v", err)
	}
	if err := s.Unsuppress(a.ID, "gone@example.org"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Suppressed(a.ID, "gone@example.org"); ok {
		t.Fatal("still suppressed")
	}
}

func testMessageStatuses(t *testing.T, h Harness) {
	for _, tc := range []struct {
		types []string
		want  string
	}{
		{[]string{store.EventDelivered, store.EventDelivered}, store.StatusSent},
		{[]string{store.EventBounced}, store.StatusBounced},
		{[]string{store.EventDelivered, store.EventBounced}, store.StatusPartial},
	} {
		m := store.Message{RecipientStatus: map[string]string{}}
		for i, typ := range tc.types {
			m.RecipientStatus[fmt.Sprint(i)] = typ
		}
		if got := store.MessageStatus(m, false); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.types, got, tc.want)
		}
		if got := store.MessageStatus(m, true); got != store.StatusQueued {
			t.Errorf("%v pending: %q", tc.types, got)
		}
	}
}

func testDomains(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	other, err := s.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "Example.COM.", Keys: []store.DKIMKey{{Algorithm: "ed25519", Selector: "s1", PrivateKey: []byte{1, 2}}}}, time.Now())
	if err != nil || d.Name != "example.com" || d.ID == 0 {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "example.com"}, time.Now()); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("same name again for the account: %v", err)
	}
	got, err := s.DomainByName("EXAMPLE.com")
	if err != nil || got.AccountID != acct.ID || len(got.Keys) != 1 || got.Keys[0].PrivateKey[1] != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	if list, _ := s.Domains(other.ID); len(list) != 0 {
		t.Fatalf("other account lists %+v", list)
	}
	got.DKIMVerified = true
	got.AccountID = other.ID // not editable
	if err := s.UpdateDomain(got); err != nil {
		t.Fatal(err)
	}
	// A verified name is its account's: no other account can claim it.
	if _, err := s.CreateDomain(store.Domain{AccountID: other.ID, Name: "example.com"}, time.Now()); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a verified name for another account: %v", err)
	}
	list, _ := s.Domains(acct.ID)
	if len(list) != 1 || !list[0].DKIMVerified {
		t.Fatalf("%+v", list)
	}
}

func testNextDue(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, a := Init(t, s)
	b := secondServer(t, s, acct.ID, "B")
	if _, ok, _ := s.NextDue(); ok {
		t.Fatal("empty queue has a next due")
	}
	now := time.Now().Truncate(time.Millisecond)
	enqueueN(t, s, a.ID, 1, now.Add(time.Hour))
	enqueueN(t, s, b.ID, 1, now)
	next, ok, err := s.NextDue()
	if err != nil || !ok || !next.Equal(now) {
		t.Fatalf("next %v %v %v", next, ok, err)
	}
}

func testEnqueueSandboxRecordsDelivered(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	sb, err := s.CreateServer(store.Server{AccountID: acct.ID, Name: "Sandbox", DeliveryType: store.DeliverySandbox, SmtpApiActivated: true}, Token("sb"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ids := enqueueN(t, s, sb.ID, 1, time.Now(), "a@example.net", "b@example.org")
	if q, _ := s.Queue(10); len(q) != 0 {
		t.Fatalf("a Sandbox message was queued: %+v", q)
	}
	m, err := s.Message(sb.ID, ids[0])
	if err != nil || m.Status != store.StatusSent || m.RecipientStatus["b@example.org"] != store.EventDelivered {
		t.Fatalf("message %+v, %v", m, err)
	}
	evs, err := s.Events(sb.ID, ids[0])
	if err != nil || len(evs) != 2 || evs[0].Type != store.EventDelivered || evs[1].Details.DeliveryMessage != store.SandboxDelivery {
		t.Fatalf("events %+v, %v", evs, err)
	}
}

func testDomainClaims(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	acct, _ := Init(t, s)
	other, err := s.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	third, err := s.CreateAccount("Third", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	squat, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "brand.example"}, now)
	if err != nil || squat.Claim {
		t.Fatalf("the first registration: %+v %v", squat, err)
	}
	claim, err := s.CreateDomain(store.Domain{AccountID: other.ID, Name: "brand.example"}, now)
	if err != nil || !claim.Claim {
		t.Fatalf("a claim on an unproven name: %+v %v", claim, err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: other.ID, Name: "brand.example"}, now); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a second claim of the same account: %v", err)
	}
	rival, err := s.CreateDomain(store.Domain{AccountID: third.ID, Name: "brand.example"}, now)
	if err != nil || !rival.Claim {
		t.Fatalf("a third account's claim: %+v %v", rival, err)
	}
	// The holder is what the sender policy finds until a claim wins.
	if d, err := s.DomainByName("brand.example"); err != nil || d.ID != squat.ID {
		t.Fatalf("DomainByName before: %+v %v", d, err)
	}
	if list, _ := s.Domains(other.ID); len(list) != 1 || list[0].ID != claim.ID || !list[0].Claim {
		t.Fatalf("the claimant's list: %+v", list)
	}
	won, err := s.TakeDomain(claim.ID, now.Add(time.Hour))
	if err != nil || won.Claim || !won.DKIMVerified || won.AccountID != other.ID {
		t.Fatalf("TakeDomain: %+v %v", won, err)
	}
	if d, err := s.DomainByName("brand.example"); err != nil || d.ID != claim.ID {
		t.Fatalf("DomainByName after: %+v %v", d, err)
	}
	if _, err := s.Domain(squat.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the squatter's record: %v, want it gone", err)
	}
	events, err := s.AccountEvents(acct.ID)
	if err != nil || len(events) != 1 || events[0].Type != store.AccountEventDomainLost || events[0].Domain != "brand.example" {
		t.Fatalf("the squatter's log: %+v %v", events, err)
	}
	if events, _ := s.AccountEvents(other.ID); len(events) != 0 {
		t.Fatalf("the winner's log: %+v", events)
	}
	// Now proven: the third account's claim cannot take it.
	if _, err := s.TakeDomain(rival.ID, now.Add(2*time.Hour)); !errors.Is(err, store.ErrDomainProven) {
		t.Fatalf("taking a proven name: %v", err)
	}
	if _, err := s.CreateDomain(store.Domain{AccountID: acct.ID, Name: "brand.example"}, now); !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("claiming a proven name: %v", err)
	}
	if err := s.DeleteDomain(rival.ID); err != nil {
		t.Fatal(err)
	}
	selfCheck(t, s)
}

func testRecordLateBounce(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	_, a := Init(t, s)
	now := time.Now().UTC()
	if _, err := s.CreateWebhook(store.Webhook{ServerID: a.ID, URL: "https://hooks.example/", MessageStream: "outbound",
		Triggers: store.WebhookTriggers{Bounce: true, SpamComplaint: true, SpamContent: true}}); err != nil {
		t.Fatal(err)
	}
	ids := enqueueN(t, s, a.ID, 1, now, "dsn@example.net", "arf@example.net", "ok@example.net")
	got, _ := s.Claim(store.ClaimRequest{Now: now, Lease: time.Minute, Max: 1})
	var outcomes []store.Outcome
	for _, r := range got[0].Pending {
		outcomes = append(outcomes, store.Outcome{Recipient: r, Type: store.EventDelivered, Details: store.EventDetails{DeliveryMessage: "250 ok"}})
	}
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Outcomes: outcomes}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	b, err := s.RecordLateBounce(a.ID, ids[0], store.Outcome{Recipient: "dsn@example.net", Type: store.EventBounced, Inactivate: true,
		Details: store.EventDetails{DeliveryMessage: "550 5.1.1 user unknown", BounceType: "HardBounce", BounceTypeCode: 1, Summary: "a DSN"}}, later)
	if err != nil || b.ID == 0 || b.Type != "HardBounce" || b.Email != "dsn@example.net" {
		t.Fatalf("late bounce %+v, %v", b, err)
	}
	if _, err := s.RecordLateBounce(a.ID, ids[0], store.Outcome{Recipient: "arf@example.net", Type: store.EventBounced, Inactivate: true,
		Details: store.EventDetails{DeliveryMessage: "abuse", BounceType: "SpamComplaint", BounceTypeCode: 100001}}, later); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordLateBounce(a.ID, "no-such-message", store.Outcome{Recipient: "x@example.net", Type: store.EventBounced}, later); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown message: %v, want ErrNotFound", err)
	}
	s = h.Reopen(t, s)
	m, _ := s.Message(a.ID, ids[0])
	if m.Status != store.StatusPartial || m.RecipientStatus["dsn@example.net"] != store.EventBounced || m.RecipientStatus["ok@example.net"] != store.EventDelivered {
		t.Errorf("message %+v", m)
	}
	evs, _ := s.Events(a.ID, ids[0])
	if len(evs) != 5 || evs[3].Type != store.EventBounced || evs[3].BounceID != b.ID {
		t.Errorf("events %+v", evs)
	}
	for _, rcpt := range []string{"dsn@example.net", "arf@example.net"} {
		if sup, ok, err := s.Suppressed(a.ID, rcpt); err != nil || !ok || sup.MessageID != ids[0] {
			t.Errorf("%s: suppressed %+v, %v, %v", rcpt, sup, ok, err)
		}
	}
	calls, _ := s.ClaimWebhookDeliveries(later, time.Minute, 10)
	triggers := map[string]bool{}
	for _, c := range calls {
		triggers[c.Trigger] = true
	}
	if len(calls) != 2 || !triggers["Bounce"] || !triggers["SpamComplaint"] {
		t.Errorf("webhook calls %+v", calls)
	}
}
