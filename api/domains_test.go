package api_test

import (
	"bytes"
	"fmt"
	"github.com/postern/postern/internal/testutil/stack"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// createDomain makes a domain over the API and returns its details.
func (e *env) createDomain(token, name string) api.DomainDetails {
	e.T.Helper()
	var d api.DomainDetails
	status, body := e.account(http.MethodPost, "/domains", token, map[string]any{"Name": name})
	decodeInto(e.T, status, body, &d)
	return d
}

func (e *env) getDomain(token string, id int64) api.DomainDetails {
	e.T.Helper()
	var d api.DomainDetails
	status, body := e.account(http.MethodGet, fmt.Sprintf("/domains/%d", id), token, nil)
	decodeInto(e.T, status, body, &d)
	return d
}

func (e *env) verifyDKIM(token string, id int64) api.DomainDetails {
	e.T.Helper()
	var d api.DomainDetails
	status, body := e.account(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDkim", id), token, nil)
	decodeInto(e.T, status, body, &d)
	return d
}

// publish puts every record of d's DKIMRecords into the test's DNS.
func (e *env) publishDKIM(d api.DomainDetails) {
	for _, r := range d.DKIMRecords {
		e.DNS.SetTXT(r.Host, r.TextValue)
	}
}

// domainsAccount creates another account with an owner token.
func (e *env) domainsAccount(name string) (store.Account, string) {
	e.T.Helper()
	acct, err := e.Store.CreateAccount(name, time.Now())
	if err != nil {
		e.T.Fatal(err)
	}
	token := auth.NewToken()
	nt := auth.StoreToken(token)
	nt.Kind, nt.AccountID, nt.Role, nt.CreatedAt = store.KindAccount, acct.ID, store.RoleOwner, time.Now()
	if err := e.Store.AddToken(nt); err != nil {
		e.T.Fatal(err)
	}
	return acct, token
}

func domainInStore(t *testing.T, st *bolt.Store, id int64) store.Domain {
	t.Helper()
	d, err := st.Domain(id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func domainKeyOf(keys []store.DKIMKey, alg string) store.DKIMKey {
	for _, k := range keys {
		if k.Algorithm == alg {
			return k
		}
	}
	return store.DKIMKey{}
}

func TestDomainCreateShape(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	status, body := e.account(http.MethodPost, "/domains", tok, map[string]any{"Name": " Mail.Example.COM. ", "ReturnPathDomain": "pm-bounces.mail.example.com"})
	golden(t, "domain_create", body)
	var d api.DomainDetails
	decodeInto(t, status, body, &d)

	st := domainInStore(t, e.Store, d.ID)
	ed, rsa := domainKeyOf(st.Keys, "ed25519"), domainKeyOf(st.Keys, "rsa")
	if len(st.Keys) != 2 || len(ed.PrivateKey) == 0 || len(rsa.PrivateKey) == 0 || st.AccountID != e.Inst.AccountID {
		t.Fatalf("stored domain %+v", st)
	}
	want := api.DomainDetails{
		ID: d.ID, Name: "mail.example.com",
		// A new domain's keys are pending, as Postmark shows a new key,
		// until verifyDkim finds their records.
		DKIMPendingHost: rsa.Host, DKIMPendingTextValue: rsa.TextValue,
		DKIMUpdateStatus:           "Pending",
		ReturnPathDomain:           "pm-bounces.mail.example.com",
		ReturnPathDomainCNAMEValue: stack.InboundDomain,
		SPFHost:                    "mail.example.com",
		DKIMRecords: []api.DKIMRecord{
			{Algorithm: "ed25519", Host: ed.Host, TextValue: ed.TextValue},
			{Algorithm: "rsa", Host: rsa.Host, TextValue: rsa.TextValue},
		},
	}
	if fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("created\n got %+v\nwant %+v", d, want)
	}
	if !strings.HasPrefix(ed.Host, "pstrn-ed-") || !strings.HasSuffix(ed.Host, "._domainkey.mail.example.com") || !strings.HasPrefix(ed.TextValue, "v=DKIM1; k=ed25519; p=") {
		t.Errorf("Ed25519 record %s %q", ed.Host, ed.TextValue)
	}
	if !strings.HasPrefix(rsa.TextValue, "v=DKIM1; k=rsa; p=") {
		t.Errorf("RSA record %q", rsa.TextValue)
	}
	if bytes.Contains(bytes.ToLower(body), []byte("private")) {
		t.Errorf("the answer names a private key: %s", body)
	}

	// GET answers the same.
	status, body = e.account(http.MethodGet, fmt.Sprintf("/domains/%d", d.ID), tok, nil)
	golden(t, "domain", body)
	var got api.DomainDetails
	decodeInto(t, status, body, &got)
	if fmt.Sprint(got) != fmt.Sprint(d) {
		t.Errorf("GET\n got %+v\nwant %+v", got, d)
	}
	// Postmark's path with a trailing slash works too.
	status, body = e.account(http.MethodPost, "/domains/", tok, map[string]any{"Name": "slash.example"})
	decodeInto(t, status, body, &got)
}

func TestDomainCreateErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	e.createDomain(tok, "taken.example")
	for _, tc := range []struct {
		body       any
		status     int
		code       int
		msgContain string
	}{
		{map[string]any{}, 422, 403, "Name is required"},
		{map[string]any{"Name": "  "}, 422, 403, "Name is required"},
		{map[string]any{"Name": "localhost"}, 422, 403, "is not a domain name"},
		{map[string]any{"Name": "not a domain.example"}, 422, 403, "is not a domain name"},
		{map[string]any{"Name": "bücher.example"}, 422, 403, "xn-- form"},
		{map[string]any{"Name": "192.0.2.1"}, 422, 403, "is not a domain name"},
		{map[string]any{"Name": "-bad.example"}, 422, 403, "is not a domain name"},
		{map[string]any{"Name": strings.Repeat("a", 64) + ".example"}, 422, 403, "is not a domain name"},
		{map[string]any{"Name": "ok.example", "ReturnPathDomain": "bounces.other.example"}, 422, 403, "must be a subdomain of ok.example"},
		{map[string]any{"Name": "ok.example", "ReturnPathDomain": "ok.example"}, 422, 403, "must be a subdomain"},
		{map[string]any{"Name": "taken.example"}, 422, 512, "The domain taken.example already exists."},
		{map[string]any{"Name": "TAKEN.example."}, 422, 512, "The domain taken.example already exists."},
		{[]byte(`{"Name":`), 422, 402, "not valid JSON"},
	} {
		status, body := e.account(http.MethodPost, "/domains", tok, tc.body)
		wantError(t, status, body, tc.status, tc.code)
		if !strings.Contains(string(body), tc.msgContain) {
			t.Errorf("POST %v: %s, want a message with %q", tc.body, body, tc.msgContain)
		}
	}
	// Without a JSON content type.
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/domains", strings.NewReader(`{"Name":"x.example"}`))
	req.Header.Set(accountHeader, tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("POST without Content-Type: %d", resp.StatusCode)
	}
	// None of that made a domain but the first.
	var list api.DomainList
	status, body := e.account(http.MethodGet, "/domains?count=10&offset=0", tok, nil)
	decodeInto(t, status, body, &list)
	if list.TotalCount != 1 || len(list.Domains) != 1 || list.Domains[0].Name != "taken.example" {
		t.Errorf("domains after the errors: %+v", list)
	}
}

func TestDomainListAndPaging(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	// Empty list.
	status, body := e.account(http.MethodGet, "/domains?count=10&offset=0", tok, nil)
	if status != 200 || strings.TrimSpace(string(body)) != `{"TotalCount":0,"Domains":[]}` {
		t.Fatalf("empty list: %d %s", status, body)
	}
	names := []string{"c.example", "a.example", "b.example"}
	ids := map[string]int64{}
	for _, n := range names {
		ids[n] = e.createDomain(tok, n).ID
	}
	status, body = e.account(http.MethodGet, "/domains?count=10&offset=0", tok, nil)
	golden(t, "domains_list", body)
	var list api.DomainList
	decodeInto(t, status, body, &list)
	want := api.DomainList{TotalCount: 3, Domains: []api.DomainSummary{
		{ID: ids["a.example"], Name: "a.example"},
		{ID: ids["b.example"], Name: "b.example"},
		{ID: ids["c.example"], Name: "c.example"},
	}}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Errorf("list\n got %+v\nwant %+v", list, want)
	}
	for _, tc := range []struct {
		query string
		names []string
	}{
		{"count=1&offset=0", []string{"a.example"}},
		{"count=2&offset=1", []string{"b.example", "c.example"}},
		{"count=5&offset=2", []string{"c.example"}},
		{"count=5&offset=3", nil},
		{"count=500&offset=1000", nil},
	} {
		status, body := e.account(http.MethodGet, "/domains?"+tc.query, tok, nil)
		var page api.DomainList
		decodeInto(t, status, body, &page)
		var got []string
		for _, d := range page.Domains {
			got = append(got, d.Name)
		}
		if page.TotalCount != 3 || fmt.Sprint(got) != fmt.Sprint(tc.names) || page.Domains == nil {
			t.Errorf("%s: %s", tc.query, body)
		}
	}
	for _, q := range []string{"", "count=10", "offset=0", "count=0&offset=0", "count=501&offset=0", "count=10&offset=-1", "count=x&offset=0"} {
		status, body := e.account(http.MethodGet, "/domains?"+q, tok, nil)
		wantError(t, status, body, 422, 403)
	}
}

func TestDomainEditAndDelete(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	d := e.createDomain(tok, "edit.example")
	path := fmt.Sprintf("/domains/%d", d.ID)

	var got api.DomainDetails
	status, body := e.account(http.MethodPut, path, tok, map[string]any{"ReturnPathDomain": "PM-Bounces.edit.example", "Name": "ignored.example"})
	golden(t, "domain_edit", body)
	decodeInto(t, status, body, &got)
	if got.ReturnPathDomain != "pm-bounces.edit.example" || got.Name != "edit.example" || got.ReturnPathDomainVerified || fmt.Sprint(got.DKIMRecords) != fmt.Sprint(d.DKIMRecords) {
		t.Errorf("after PUT: %+v", got)
	}
	// A body without ReturnPathDomain changes nothing; an empty one clears it.
	status, body = e.account(http.MethodPut, path, tok, map[string]any{})
	if decodeInto(t, status, body, &got); got.ReturnPathDomain != "pm-bounces.edit.example" {
		t.Errorf("PUT {}: %+v", got)
	}
	status, body = e.account(http.MethodPut, path, tok, map[string]any{"ReturnPathDomain": "elsewhere.example"})
	wantError(t, status, body, 422, 403)
	status, body = e.account(http.MethodPut, path, tok, map[string]any{"ReturnPathDomain": ""})
	if decodeInto(t, status, body, &got); got.ReturnPathDomain != "" {
		t.Errorf("PUT empty: %+v", got)
	}
	status, body = e.account(http.MethodPut, path, tok, []byte("{"))
	wantError(t, status, body, 422, 402)

	// verifyReturnPath: none to verify; then its CNAME is looked up, and
	// must lead to the inbound domain.
	status, body = e.account(http.MethodPut, path+"/verifyReturnPath", tok, nil)
	wantError(t, status, body, 422, 403)
	e.account(http.MethodPut, path, tok, map[string]any{"ReturnPathDomain": "pm-bounces.edit.example"})
	e.DNS.SetCNAME("pm-bounces.edit.example", "elsewhere.example")
	status, body = e.account(http.MethodPut, path+"/verifyReturnPath", tok, nil)
	if decodeInto(t, status, body, &got); got.ReturnPathDomainVerified || got.ReturnPathDomainCNAMEValue != stack.InboundDomain {
		t.Errorf("a CNAME elsewhere: %+v", got)
	}
	e.DNS.SetCNAME("pm-bounces.edit.example", stack.InboundDomain)
	status, body = e.account(http.MethodPut, path+"/verifyReturnPath", tok, nil)
	if decodeInto(t, status, body, &got); !got.ReturnPathDomainVerified {
		t.Errorf("the CNAME published: %+v", got)
	}
	// Another Return-Path domain must be verified anew.
	status, body = e.account(http.MethodPut, path, tok, map[string]any{"ReturnPathDomain": "rp.edit.example"})
	if decodeInto(t, status, body, &got); got.ReturnPathDomainVerified {
		t.Errorf("a new Return-Path domain starts verified: %+v", got)
	}

	status, body = e.account(http.MethodDelete, path, tok, nil)
	golden(t, "domain_delete", body)
	if status != 200 || strings.TrimSpace(string(body)) != `{"ErrorCode":0,"Message":"Domain edit.example removed."}` {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete, http.MethodPut} {
		status, body = e.account(m, path, tok, map[string]any{})
		wantError(t, status, body, 404, 510)
	}
	if _, err := e.Store.DomainByName("edit.example"); err == nil {
		t.Error("the name is still indexed")
	}
	// The name is free again.
	if again := e.createDomain(tok, "edit.example"); again.ID == d.ID {
		t.Errorf("re-created with the old ID %d", again.ID)
	}
}

func TestDomainVerifyDKIM(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	d := e.createDomain(tok, "verify.example")
	ed, rsa := d.DKIMRecords[0], d.DKIMRecords[1]

	// Nothing published.
	got := e.verifyDKIM(tok, d.ID)
	if got.DKIMVerified || got.DKIMUpdateStatus != "Pending" || got.DKIMHost != "" || got.DKIMPendingHost != rsa.Host {
		t.Errorf("verify before publishing: %+v", got)
	}
	// One of the two.
	e.DNS.SetTXT(ed.Host, ed.TextValue)
	if got = e.verifyDKIM(tok, d.ID); got.DKIMVerified {
		t.Errorf("verified with the RSA record missing: %+v", got)
	}
	// Another key at the RSA host.
	other := e.createDomain(tok, "other.example")
	e.DNS.SetTXT(rsa.Host, other.DKIMRecords[1].TextValue)
	if got = e.verifyDKIM(tok, d.ID); got.DKIMVerified {
		t.Errorf("verified with a wrong RSA key: %+v", got)
	}
	// Both, the RSA one respaced and beside another TXT record.
	e.DNS.SetTXT(rsa.Host, "google-site-verification=abc", strings.ReplaceAll(rsa.TextValue, "; ", ";"))
	status, body := e.account(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDkim", d.ID), tok, nil)
	golden(t, "domain_verified", body)
	decodeInto(t, status, body, &got)
	want := d
	want.DKIMVerified, want.DKIMUpdateStatus = true, "Verified"
	want.DKIMHost, want.DKIMTextValue, want.DKIMPendingHost, want.DKIMPendingTextValue = rsa.Host, rsa.TextValue, "", ""
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("verified\n got %+v\nwant %+v", got, want)
	}
	if st := domainInStore(t, e.Store, d.ID); !st.DKIMVerified || st.VerifiedAt.IsZero() {
		t.Errorf("stored after verify: %+v", st)
	}
	var summary api.DomainList
	status, body = e.account(http.MethodGet, "/domains?count=10&offset=0", tok, nil)
	if decodeInto(t, status, body, &summary); !summary.Domains[1].DKIMVerified || summary.Domains[1].Name != "verify.example" {
		t.Errorf("list after verify: %+v", summary)
	}

	// A record withdrawn: unverified again; published again: verified.
	e.DNS.SetTXT(ed.Host, "v=spf1 -all")
	if got = e.verifyDKIM(tok, d.ID); got.DKIMVerified || got.DKIMHost != rsa.Host || got.DKIMUpdateStatus != "Verified" {
		t.Errorf("verify after withdrawal: %+v", got)
	}
	e.DNS.SetTXT(ed.Host, ed.TextValue)
	if got = e.verifyDKIM(tok, d.ID); !got.DKIMVerified {
		t.Errorf("verify after publishing again: %+v", got)
	}
	// A DNS failure changes nothing and says so.
	e.DNS.SetServFail(rsa.Host)
	status, body = e.account(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDkim", d.ID), tok, nil)
	wantError(t, status, body, http.StatusServiceUnavailable, 0)
	if !strings.Contains(string(body), "DNS did not answer") || !strings.Contains(string(body), rsa.Host) {
		t.Errorf("verify with SERVFAIL: %s", body)
	}
	if !domainInStore(t, e.Store, d.ID).DKIMVerified {
		t.Error("a DNS failure unverified the domain")
	}
}

// TestDomainRotation walks a DKIM rotation end to end: the new keys are
// pending while the old ones sign; verifyDkim promotes them once their
// records are published; the old keys are revoked, and safe to remove
// from DNS once no queued message carries their signature and the
// relay's lease has passed.
func TestDomainRotation(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	var refuse atomic.Bool
	refuse.Store(true)
	e := newEnv(t, envOptions{
		now: now,
		peer: smtptest.Options{Rcpt: func(string) error {
			if refuse.Load() {
				return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
			}
			return nil
		}},
		relayOpts: func(c *relay.WorkerConfig) { c.RetryMaxInterval = 200 * time.Millisecond },
	})
	tok := e.Inst.AccountToken
	d := e.createDomain(tok, "rotate.example")
	path := fmt.Sprintf("/domains/%d", d.ID)

	// A never verified domain cannot be rotated.
	status, body := e.account(http.MethodPost, path+"/rotatedkim", tok, nil)
	wantError(t, status, body, 422, 505)
	e.publishDKIM(d)
	e.verifyDKIM(tok, d.ID)
	old := domainInStore(t, e.Store, d.ID)

	// A Live server sends a message from the domain; the peer defers it,
	// so it stays queued with its signature by the old keys.
	srvToken := auth.NewToken()
	srv, err := e.Store.CreateServer(store.Server{AccountID: e.Inst.AccountID, Name: "Live", DeliveryType: store.DeliveryLive, SmtpApiActivated: true}, auth.StoreToken(srvToken), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.route("rcpt.example")
	msgID := e.Send(srvToken, "app@rotate.example", []string{"bob@rcpt.example"}, "From: app@rotate.example\nTo: bob@rcpt.example\nSubject: hi\n\nhello\n")
	domainWaitFor(t, "the deferred attempt", func() bool {
		evs, _ := e.Store.Events(srv.ID, msgID)
		return len(evs) > 0
	})
	if evs, _ := e.Store.Events(srv.ID, msgID); evs[0].Type != store.EventTransient || evs[0].Details.Signed != "rotate.example" {
		t.Fatalf("first attempt: %+v", evs)
	}

	status, body = e.account(http.MethodPost, path+"/rotatedkim", tok, nil)
	golden(t, "domain_rotate", body)
	var rot api.DomainDetails
	decodeInto(t, status, body, &rot)
	mid := domainInStore(t, e.Store, d.ID)
	newRSA := domainKeyOf(mid.PendingKeys, "rsa")
	if len(mid.PendingKeys) != 2 || newRSA.Selector == domainKeyOf(old.Keys, "rsa").Selector || fmt.Sprint(mid.Keys) != fmt.Sprint(old.Keys) {
		t.Fatalf("stored after rotate: pending %d keys, active changed %v", len(mid.PendingKeys), fmt.Sprint(mid.Keys) != fmt.Sprint(old.Keys))
	}
	if !rot.DKIMVerified || rot.DKIMUpdateStatus != "Pending" || rot.DKIMHost != d.DKIMPendingHost ||
		rot.DKIMPendingHost != newRSA.Host || rot.DKIMPendingTextValue != newRSA.TextValue ||
		rot.DKIMRevokedHost != "" || rot.SafeToRemoveRevokedKeyFromDNS || len(rot.DKIMRecords) != 4 ||
		rot.DKIMRecords[2].Host != domainKeyOf(mid.PendingKeys, "ed25519").Host || rot.DKIMRecords[3].Host != newRSA.Host {
		t.Fatalf("after rotate: %+v", rot)
	}
	// Only one rotation at a time.
	status, body = e.account(http.MethodPost, path+"/rotatedkim", tok, nil)
	wantError(t, status, body, 422, 505)

	// The new records are not published yet: the rotation waits, the old
	// keys stay verified and signing.
	got := e.verifyDKIM(tok, d.ID)
	if !got.DKIMVerified || got.DKIMUpdateStatus != "Pending" || got.DKIMPendingHost != newRSA.Host {
		t.Fatalf("verify before publishing the new records: %+v", got)
	}
	// Only one of the two new records: still waiting.
	e.DNS.SetTXT(rot.DKIMRecords[3].Host, rot.DKIMRecords[3].TextValue)
	if got = e.verifyDKIM(tok, d.ID); got.DKIMUpdateStatus != "Pending" {
		t.Fatalf("promoted with the Ed25519 record missing: %+v", got)
	}
	e.publishDKIM(rot)
	status, body = e.account(http.MethodPut, path+"/verifyDkim", tok, nil)
	golden(t, "domain_rotated", body)
	decodeInto(t, status, body, &got)
	want := api.DomainDetails{
		ID: d.ID, Name: "rotate.example", DKIMVerified: true,
		DKIMHost: newRSA.Host, DKIMTextValue: newRSA.TextValue,
		DKIMRevokedHost: d.DKIMPendingHost, DKIMRevokedTextValue: d.DKIMPendingTextValue,
		DKIMUpdateStatus: "Verified", SPFHost: "rotate.example",
		ReturnPathDomainCNAMEValue: stack.InboundDomain,
		DKIMRecords:                rot.DKIMRecords[2:],
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after promotion\n got %+v\nwant %+v", got, want)
	}
	after := domainInStore(t, e.Store, d.ID)
	if fmt.Sprint(after.Keys) != fmt.Sprint(mid.PendingKeys) || len(after.PendingKeys) != 0 || len(after.RevokedKeys) != 2 {
		t.Fatalf("stored after promotion: %+v", after)
	}
	for _, k := range after.RevokedKeys {
		if len(k.PrivateKey) != 0 {
			t.Errorf("revoked key %s kept its private key", k.Selector)
		}
	}

	// Past the relay's lease, the queued message still carries the old
	// signature: not safe yet.
	advance(31 * time.Minute)
	if got = e.getDomain(tok, d.ID); got.SafeToRemoveRevokedKeyFromDNS {
		t.Fatal("safe to remove while a queued message carries the old signature")
	}
	// Once it is delivered, it is.
	refuse.Store(false)
	e.WaitFinal(srv.ID, msgID)
	if got = e.getDomain(tok, d.ID); !got.SafeToRemoveRevokedKeyFromDNS || got.DKIMRevokedHost != d.DKIMPendingHost {
		t.Fatalf("after the delivery: %+v", got)
	}
	// New mail is signed with the new keys.
	if peer := e.Peer.Messages(); len(peer) != 1 || !bytes.Contains(peer[0].Data, []byte("s="+domainKeyOf(old.Keys, "rsa").Selector)) {
		t.Fatalf("the deferred message was not sent with its first signature")
	}
	id2 := e.Send(srvToken, "app@rotate.example", []string{"carol@rcpt.example"}, "From: app@rotate.example\nTo: carol@rcpt.example\nSubject: again\n\nhello\n")
	e.WaitFinal(srv.ID, id2)
	peer := e.Peer.Messages()
	if len(peer) != 2 || !bytes.Contains(peer[1].Data, []byte("s="+newRSA.Selector)) || bytes.Contains(peer[1].Data, []byte("s="+domainKeyOf(old.Keys, "rsa").Selector)) {
		t.Fatalf("the next message is not signed with the new keys only")
	}
	// And another rotation may start.
	status, body = e.account(http.MethodPost, path+"/rotatedkim", tok, nil)
	decodeInto(t, status, body, &rot)
}

// TestDomainIsolation: another account's domain answers exactly as a
// missing one, on every endpoint, and changes nothing.
func TestDomainIsolation(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.Inst.AccountToken
	mine := e.createDomain(tok, "mine.example")
	e.publishDKIM(mine)
	_, otherTok := e.domainsAccount("Customer")
	theirs := e.createDomain(otherTok, "theirs.example")
	before := domainInStore(t, e.Store, mine.ID)

	missing := theirs.ID + 100
	for _, tc := range []struct {
		method, suffix string
		body           any
	}{
		{http.MethodGet, "", nil},
		{http.MethodPut, "", map[string]any{"ReturnPathDomain": "x.mine.example"}},
		{http.MethodPut, "", []byte("not json")},
		{http.MethodPut, "/verifyDkim", nil},
		{http.MethodPut, "/verifyReturnPath", nil},
		{http.MethodPost, "/rotatedkim", nil},
		{http.MethodDelete, "", nil},
	} {
		_, wantBody := e.account(tc.method, fmt.Sprintf("/domains/%d%s", missing, tc.suffix), otherTok, tc.body)
		status, body := e.account(tc.method, fmt.Sprintf("/domains/%d%s", mine.ID, tc.suffix), otherTok, tc.body)
		wantError(t, status, body, 404, 510)
		if !bytes.Equal(body, wantBody) {
			t.Errorf("%s %s: another account's domain answers %s, a missing one %s", tc.method, tc.suffix, body, wantBody)
		}
		status, body = e.account(tc.method, fmt.Sprintf("/domains/abc%s", tc.suffix), otherTok, tc.body)
		wantError(t, status, body, 404, 510)
	}
	if after := domainInStore(t, e.Store, mine.ID); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("another account changed the domain:\n%+v\n%+v", before, after)
	}
	// Each account lists its own.
	for _, c := range []struct {
		token string
		name  string
	}{{tok, "mine.example"}, {otherTok, "theirs.example"}} {
		var list api.DomainList
		status, body := e.account(http.MethodGet, "/domains?count=10&offset=0", c.token, nil)
		if decodeInto(t, status, body, &list); list.TotalCount != 1 || list.Domains[0].Name != c.name {
			t.Errorf("list: %+v, want only %s", list, c.name)
		}
	}
	// A name proven in DNS is taken, and the answer says no more than
	// that. (One not proven can be claimed: TestDomainClaimOverAPI.)
	e.publishDKIM(mine)
	e.verifyDKIM(tok, mine.ID)
	status, body := e.account(http.MethodPost, "/domains", otherTok, map[string]any{"Name": "mine.example"})
	wantError(t, status, body, 422, 512)
	if _, own := e.account(http.MethodPost, "/domains", tok, map[string]any{"Name": "mine.example"}); !bytes.Equal(body, own) {
		t.Errorf("another account's name answers %s, one's own %s", body, own)
	}

	// A server token is no account token, in either header.
	for _, path := range []string{"/domains?count=10&offset=0", fmt.Sprintf("/domains/%d", mine.ID)} {
		status, body = e.account(http.MethodGet, path, e.Inst.ServerToken, nil)
		wantError(t, status, body, 401, 10)
		status, body = e.server(http.MethodGet, path, e.Inst.ServerToken, nil)
		wantError(t, status, body, 401, 10)
		status, body = e.account(http.MethodGet, path, "", nil)
		wantError(t, status, body, 401, 10)
	}
}

// waitFor polls cond for up to 20 seconds.
func domainWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Domain squatting: a name registered first by one account but not
// proven in DNS is claimed by another, which takes it when its own DKIM
// records are found; the first account's record goes, with an event in
// its log. From then on the name is the winner's, and a third account's
// claim cannot take it.
func TestDomainClaimOverAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	squatter := e.Inst.AccountToken
	_, ownerTok := e.domainsAccount("Brand owner")
	_, thirdTok := e.domainsAccount("Third")
	squat := e.createDomain(squatter, "brand.example")

	claim := e.createDomain(ownerTok, "brand.example")
	if !claim.Claim || claim.DKIMVerified || claim.ID == squat.ID {
		t.Fatalf("the claim: %+v", claim)
	}
	// Before its records are published, verifyDkim changes nothing.
	if d := e.verifyDKIM(ownerTok, claim.ID); !d.Claim || d.DKIMVerified {
		t.Fatalf("verifyDkim with no records: %+v", d)
	}
	third := e.createDomain(thirdTok, "brand.example")
	e.publishDKIM(claim)
	won := e.verifyDKIM(ownerTok, claim.ID)
	if won.Claim || !won.DKIMVerified || won.ID != claim.ID {
		t.Fatalf("verifyDkim with the records published: %+v", won)
	}
	status, body := e.account(http.MethodGet, fmt.Sprintf("/domains/%d", squat.ID), squatter, nil)
	wantError(t, status, body, 404, 510)
	if d, err := e.Store.DomainByName("brand.example"); err != nil || d.ID != claim.ID {
		t.Fatalf("the sender policy's domain: %+v %v", d, err)
	}
	events, err := e.Store.AccountEvents(e.Inst.AccountID)
	if err != nil || len(events) != 1 || events[0].Type != store.AccountEventDomainLost || events[0].Domain != "brand.example" {
		t.Fatalf("the squatter's log: %+v %v", events, err)
	}
	// The third account's claim, even with its records published, now
	// meets a proven name.
	e.publishDKIM(third)
	status, body = e.account(http.MethodPut, fmt.Sprintf("/domains/%d/verifyDkim", third.ID), thirdTok, nil)
	wantError(t, status, body, 422, 512)
	status, body = e.account(http.MethodPost, "/domains", squatter, map[string]any{"Name": "brand.example"})
	wantError(t, status, body, 422, 512)
}
