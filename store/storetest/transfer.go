package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/postern/postern/store"
)

// transferWorld is a server with everything a server has, in the
// operator's account, and a second account to move it to.
type transferWorld struct {
	s          store.Backend
	from, to   store.Account
	third      store.Account
	srv, other store.Server
	msgs       []string
	domain     store.Domain // the operator's example.com, which srv sent as
	bob        store.User   // a Member of the operator's account
	entryDue   time.Time    // when srv's queued entry falls due again
	reads      func() string
	webhookID  int64
}

func newTransferWorld(t *testing.T, s store.Backend) *transferWorld {
	t.Helper()
	w := &transferWorld{s: s}
	now := time.Now().UTC().Truncate(time.Millisecond)
	w.from, w.srv = Init(t, s)
	w.other = secondServer(t, s, w.from.ID, "Other")
	var err error
	if w.to, err = s.CreateAccount("Target", now); err != nil {
		t.Fatal(err)
	}
	if w.third, err = s.CreateAccount("Third", now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddServerToken(w.srv.ID, Token("srv-second"), now); err != nil {
		t.Fatal(err)
	}
	key := store.DKIMKey{Algorithm: "ed25519", Selector: "s1", PrivateKey: []byte("private"), Host: "s1._domainkey.example.com", TextValue: "v=DKIM1; k=ed25519; p=x"}
	if w.domain, err = s.CreateDomain(store.Domain{AccountID: w.from.ID, Name: "example.com", Keys: []store.DKIMKey{key}}, now); err != nil {
		t.Fatal(err)
	}
	if w.domain, err = s.ModifyDomain(w.domain.ID, func(d *store.Domain) error {
		d.DKIMVerified, d.VerifiedAt = true, now
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The target already holds target.example; a third account holds
	// third.example; nobody holds nobody.example.
	for _, d := range []store.Domain{{AccountID: w.to.ID, Name: "target.example"}, {AccountID: w.third.ID, Name: "third.example"}} {
		if _, err := s.CreateDomain(d, now); err != nil {
			t.Fatal(err)
		}
	}

	// Mail: a message delivered to one, deferred for another (its entry
	// stays queued) and bounced hard for a third; messages from the
	// other domains.
	m := NewMessage(w.srv.ID, now)
	m.Recipients = []string{"ok@example.net", "later@example.net", "gone@example.org"}
	if err := Enqueue(s, m, []byte("From: App <app@example.com>\r\nSubject: x\r\n\r\nbody")); err != nil {
		t.Fatal(err)
	}
	w.msgs = append(w.msgs, m.MessageID)
	for _, from := range []string{"Target <news@Target.Example>", "x@third.example", "=?utf-8?q?Nobody?= <n@nobody.example>"} {
		m := NewMessage(w.srv.ID, now.Add(time.Second))
		m.From = from
		if err := Enqueue(s, m, []byte("x")); err != nil {
			t.Fatal(err)
		}
		w.msgs = append(w.msgs, m.MessageID)
	}
	enqueueN(t, s, w.other.ID, 1, now)
	got, err := s.Claim(store.ClaimRequest{Now: now.Add(2 * time.Second), Lease: time.Minute, Max: 1, Allow: func(id int64) int {
		if id == w.srv.ID {
			return 1
		}
		return 0
	}})
	if err != nil || len(got) != 1 || got[0].MessageID != w.msgs[0] {
		t.Fatalf("claim %+v %v", got, err)
	}
	w.entryDue = now.Add(time.Hour)
	if err := s.RecordAttempt(store.Attempt{Entry: got[0], At: now, Retry: w.entryDue, Outcomes: []store.Outcome{
		{Recipient: "ok@example.net", Type: store.EventDelivered},
		{Recipient: "later@example.net", Type: store.EventTransient, Details: store.EventDetails{DeliveryMessage: "450 4.2.0 busy"}},
		{Recipient: "gone@example.org", Type: store.EventBounced, Inactivate: true, Details: store.EventDetails{DeliveryMessage: "550 5.1.1 no", BounceType: "HardBounce", BounceTypeCode: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	srv := w.srv
	srv.RateLimitPerMinute, srv.DailyQuota, srv.Color, srv.TrackOpens = 30, 1000, "Red", true
	if err := s.UpdateServer(srv); err != nil {
		t.Fatal(err)
	}
	if w.srv, err = s.Server(w.srv.ID); err != nil {
		t.Fatal(err)
	}
	hook, err := s.CreateWebhook(store.Webhook{ServerID: w.srv.ID, URL: "https://hooks.example/a", MessageStream: "outbound"})
	if err != nil {
		t.Fatal(err)
	}
	w.webhookID = hook.ID

	// People: Ann owns the operator's account, Bob is a Member with
	// grants to both its servers, Cy a Member of both accounts.
	ann, _ := s.CreateUser(store.User{Email: "ann@example.com"})
	w.bob, _ = s.CreateUser(store.User{Email: "bob@example.com"})
	cy, _ := s.CreateUser(store.User{Email: "cy@example.com"})
	for _, m := range []store.Membership{
		{UserID: ann.ID, AccountID: w.from.ID, Role: store.UserOwner},
		{UserID: w.bob.ID, AccountID: w.from.ID, Role: store.UserMember, Servers: []store.ServerGrant{{ServerID: w.srv.ID, Access: store.AccessAdmin}, {ServerID: w.other.ID, Access: store.AccessViewer}}},
		{UserID: cy.ID, AccountID: w.from.ID, Role: store.UserMember, Servers: []store.ServerGrant{{ServerID: w.srv.ID, Access: store.AccessViewer}}},
		{UserID: cy.ID, AccountID: w.to.ID, Role: store.UserMember},
	} {
		if err := s.SetMembership(m); err != nil {
			t.Fatal(err)
		}
	}

	// What every read by the server's ID answers, but its AccountID.
	w.reads = func() string {
		out := ""
		add := func(what string, v any, err error) { out += fmt.Sprintf("%s: %+v %v\n", what, v, err) }
		srv, err := s.Server(w.srv.ID)
		srv.AccountID = 0
		add("server", srv, err)
		for _, id := range w.msgs {
			m, err := s.Message(w.srv.ID, id)
			add("message", m, err)
			raw, err := s.RawMessage(w.srv.ID, id)
			add("raw", string(raw), err)
			evs, err := s.Events(w.srv.ID, id)
			add("events", evs, err)
		}
		list, err := s.Messages(w.srv.ID, 10)
		add("messages", len(list), err)
		bounces, err := s.Bounces(w.srv.ID, store.BounceQuery{Count: 10})
		add("bounces", bounces, err)
		sup, ok, err := s.Suppressed(w.srv.ID, "gone@example.org")
		add("suppressed", fmt.Sprint(sup, ok), err)
		stats, err := s.Stats(w.srv.ID, store.StatsQuery{})
		add("stats", stats, err)
		inactive, byType, err := s.DeliveryStats(w.srv.ID)
		add("deliverystats", fmt.Sprint(inactive, byType), err)
		toks, err := s.ServerTokens(w.srv.ID)
		for i := range toks {
			toks[i].AccountID = 0
		}
		add("tokens", toks, err)
		hooks, err := s.ListWebhooks(w.srv.ID, "")
		add("webhooks", hooks, err)
		streams, err := s.ListStreams(w.srv.ID)
		add("streams", streams, err)
		q, err := s.Queue(10)
		add("queue", q, err)
		return out
	}
	return w
}

func serverNames(t *testing.T, s store.Backend, accountID int64) string {
	t.Helper()
	list, err := s.ListServers(accountID)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, srv := range list {
		names = append(names, srv.Name)
	}
	return fmt.Sprint(names)
}

func domainsOf(t *testing.T, s store.Backend, accountID int64) string {
	t.Helper()
	list, err := s.Domains(accountID)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, d := range list {
		out += fmt.Sprintf("%s claim=%v verified=%v keys=%d; ", d.Name, d.Claim, d.DKIMVerified, len(d.Keys))
	}
	return out
}

func testTransferServer(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{})
	w := newTransferWorld(t, s)
	now := time.Now()
	before := w.reads()
	domainsBefore := domainsOf(t, s, w.from.ID) + "|" + domainsOf(t, s, w.to.ID)

	// Refusals change nothing.
	clash := secondServer(t, s, w.to.ID, "DEFAULT")
	for _, c := range []struct {
		tr   store.Transfer
		want error
	}{
		{store.Transfer{ServerID: w.srv.ID, FromAccount: w.to.ID, ToAccount: w.third.ID}, store.ErrNotFound},
		{store.Transfer{ServerID: 9999, FromAccount: w.from.ID, ToAccount: w.to.ID}, store.ErrNotFound},
		{store.Transfer{ServerID: w.srv.ID, FromAccount: w.from.ID, ToAccount: 9999}, store.ErrNotFound},
		{store.Transfer{ServerID: w.srv.ID, FromAccount: w.from.ID, ToAccount: w.from.ID}, store.ErrSameAccount},
		{store.Transfer{ServerID: w.srv.ID, FromAccount: w.from.ID, ToAccount: w.to.ID, CopyDomains: true}, store.ErrDuplicateName},
	} {
		if _, err := s.TransferServer(c.tr, now); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.tr, err, c.want)
		}
	}
	if got := w.reads(); got != before {
		t.Fatalf("a refused transfer changed the server's data:\n%s\nwas\n%s", got, before)
	}
	if srv, _ := s.Server(w.srv.ID); srv.AccountID != w.from.ID {
		t.Fatalf("a refused transfer moved the server: %+v", srv)
	}
	if got := domainsOf(t, s, w.from.ID) + "|" + domainsOf(t, s, w.to.ID); got != domainsBefore {
		t.Fatalf("a refused transfer changed domains: %s, was %s", got, domainsBefore)
	}
	if ms, _ := s.AccountMembers(w.from.ID); len(ms) != 3 || len(ms[1].Servers) != 2 {
		t.Fatalf("a refused transfer changed grants: %+v", ms)
	}
	if evs, _ := s.AccountEvents(w.from.ID); len(evs) != 0 {
		t.Fatalf("a refused transfer logged %+v", evs)
	}
	if _, err := s.DeleteServer(w.to.ID, clash.ID); err != nil {
		t.Fatal(err)
	}

	res, err := s.TransferServer(store.Transfer{ServerID: w.srv.ID, FromAccount: w.from.ID, ToAccount: w.to.ID, CopyDomains: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Server.ID != w.srv.ID || res.Server.AccountID != w.to.ID || res.Server.Name != w.srv.Name || res.Server.RateLimitPerMinute != 30 {
		t.Errorf("result's server %+v", res.Server)
	}
	if fmt.Sprint(res.CopiedDomains) != "[example.com]" || fmt.Sprint(res.MissingDomains) != "[nobody.example third.example]" || res.RemovedGrants != 2 {
		t.Errorf("result %+v", res)
	}
	if got := w.reads(); got != before {
		t.Errorf("the server's data changed:\n%s\nwas\n%s", got, before)
	}
	if srv, _ := s.Server(w.srv.ID); srv.AccountID != w.to.ID {
		t.Errorf("server %+v", srv)
	}
	if got := serverNames(t, s, w.from.ID); got != "[Other]" {
		t.Errorf("the source's servers: %s", got)
	}
	if got := serverNames(t, s, w.to.ID); got != "[Default]" {
		t.Errorf("the target's servers: %s", got)
	}
	for _, name := range []string{"srv", "srv-second"} {
		tok, err := s.LookupToken(Token(name).Hash)
		if err != nil || tok.Kind != store.KindServer || tok.ServerID != w.srv.ID || tok.AccountID != w.to.ID {
			t.Errorf("token %s: %+v %v", name, tok, err)
		}
	}
	if tok, _ := s.LookupToken(Token("Other").Hash); tok.AccountID != w.from.ID {
		t.Errorf("another server's token moved: %+v", tok)
	}
	// The queued entry is still the server's, and claimable when due.
	got, err := s.Claim(store.ClaimRequest{Now: w.entryDue, Lease: time.Minute, Max: 10, Allow: func(id int64) int {
		if id == w.srv.ID {
			return 10
		}
		return 0
	}})
	i := slices.IndexFunc(got, func(e store.QueueEntry) bool { return e.MessageID == w.msgs[0] })
	if err != nil || len(got) != len(w.msgs) || i < 0 || got[i].ServerID != w.srv.ID || fmt.Sprint(got[i].Pending) != "[later@example.net]" {
		t.Fatalf("claim after the transfer: %+v %v", got, err)
	}
	if err := s.RecordAttempt(store.Attempt{Entry: got[i], At: w.entryDue, Outcomes: []store.Outcome{{Recipient: "later@example.net", Type: store.EventDelivered}}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(w.srv.ID, w.msgs[0]); m.Status != store.StatusPartial {
		t.Errorf("status after the retry %q", m.Status)
	}

	// Domains: the target holds example.com with the same keys; the
	// source keeps a claim on it.
	d, err := s.DomainByName("example.com")
	if err != nil || d.AccountID != w.to.ID || d.Claim || !d.DKIMVerified || d.ID == w.domain.ID || !slices.EqualFunc(d.Keys, w.domain.Keys, func(a, b store.DKIMKey) bool {
		return a.Selector == b.Selector && string(a.PrivateKey) == string(b.PrivateKey) && a.TextValue == b.TextValue
	}) {
		t.Errorf("example.com after the copy: %+v %v", d, err)
	}
	if got := domainsOf(t, s, w.from.ID); got != "example.com claim=true verified=false keys=1; " {
		t.Errorf("the source's domains: %s", got)
	}
	if got := domainsOf(t, s, w.to.ID); got != "example.com claim=false verified=true keys=1; target.example claim=false verified=false keys=0; " {
		t.Errorf("the target's domains: %s", got)
	}
	if d, _ := s.DomainByName("third.example"); d.AccountID != w.third.ID {
		t.Errorf("a third account's domain moved: %+v", d)
	}

	// Grants to the server are gone from the source's memberships.
	ms, err := s.AccountMembers(w.from.ID)
	if err != nil || len(ms) != 3 || fmt.Sprint(ms[1].Servers) != fmt.Sprint([]store.ServerGrant{{ServerID: w.other.ID, Access: store.AccessViewer}}) || len(ms[2].Servers) != 0 {
		t.Errorf("the source's memberships: %+v %v", ms, err)
	}
	if ms, _ := s.AccountMembers(w.to.ID); len(ms) != 1 || len(ms[0].Servers) != 0 {
		t.Errorf("the target's memberships: %+v", ms)
	}

	// Both accounts' logs tell of it.
	for _, c := range []struct {
		account int64
		typ     string
	}{{w.from.ID, store.AccountEventServerTransferredOut}, {w.to.ID, store.AccountEventServerTransferredIn}} {
		evs, err := s.AccountEvents(c.account)
		if err != nil || len(evs) != 1 || evs[0].Type != c.typ || evs[0].Message == "" {
			t.Errorf("account %d's log: %+v %v", c.account, evs, err)
		}
	}
	selfCheck(t, s)

	// Back again, without domains: the source holds none of them now.
	back, err := s.TransferServer(store.Transfer{ServerID: w.srv.ID, FromAccount: w.to.ID, ToAccount: w.from.ID}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.CopiedDomains) != 0 || fmt.Sprint(back.MissingDomains) != "[example.com nobody.example target.example third.example]" || back.RemovedGrants != 0 || back.Server.AccountID != w.from.ID {
		t.Errorf("back: %+v", back)
	}
	if d, _ := s.DomainByName("example.com"); d.AccountID != w.to.ID {
		t.Errorf("example.com moved without CopyDomains: %+v", d)
	}
	s = h.Reopen(t, s)
	if srv, err := s.Server(w.srv.ID); err != nil || srv.AccountID != w.from.ID {
		t.Errorf("after a restart: %+v %v", srv, err)
	}
	if got := serverNames(t, s, w.from.ID); got != "[Default Other]" {
		t.Errorf("the source's servers after the return: %s", got)
	}
}

func testTransferServerCaps(t *testing.T, h Harness) {
	s := h.Open(t, store.Caps{ServersPerAccount: 2, DomainsPerAccount: 1})
	w := newTransferWorld(t, s)
	// The target has target.example: copying example.com makes two.
	tr := store.Transfer{ServerID: w.srv.ID, FromAccount: w.from.ID, ToAccount: w.to.ID, CopyDomains: true}
	var capped *store.CapError
	if _, err := s.TransferServer(tr, time.Now()); !errors.As(err, &capped) || capped.Setting != "max-domains-per-account" {
		t.Fatalf("past the domains cap: %v", err)
	}
	secondServer(t, s, w.to.ID, "One")
	secondServer(t, s, w.to.ID, "Two")
	tr.CopyDomains = false
	if _, err := s.TransferServer(tr, time.Now()); !errors.As(err, &capped) || capped.Setting != "max-servers-per-account" {
		t.Fatalf("past the servers cap: %v", err)
	}
	if srv, _ := s.Server(w.srv.ID); srv.AccountID != w.from.ID {
		t.Fatalf("moved: %+v", srv)
	}
}
