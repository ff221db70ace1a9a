package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/internal/testutil/dkimtest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/store"
)

// TestBroadcastsStream: a Broadcasts stream's messages carry a one-click
// unsubscribe link (RFC 8058) under their DKIM signature; the link
// suppresses the recipient in that stream only and files the
// SubscriptionChange call of the server's webhook.
func TestBroadcastsStream(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.route("example.net")
	srv, token := e.LiveServer("news")
	keys := e.SendingDomain(srv.AccountID, "example.com")
	status, body := e.server(http.MethodPost, "/message-streams", token, map[string]any{"ID": "newsletter", "Name": "Newsletter", "MessageStreamType": "Broadcasts"})
	var st api.MessageStream
	decodeInto(t, status, body, &st)
	if st.ID != "newsletter" || st.MessageStreamType != "Broadcasts" || st.SubscriptionManagementConfiguration.UnsubscribeHandlingType != "Postmark" || st.ServerID != srv.ID {
		t.Fatalf("created %+v", st)
	}
	status, body = e.server(http.MethodPost, "/message-streams", token, map[string]any{"ID": "newsletter", "Name": "Again", "MessageStreamType": "Broadcasts"})
	wantError(t, status, body, http.StatusUnprocessableEntity, 1221)
	var list api.MessageStreamList
	status, body = e.server(http.MethodGet, "/message-streams", token, nil)
	decodeInto(t, status, body, &list)
	if list.TotalCount != 2 || list.MessageStreams[0].ID != "outbound" || list.MessageStreams[1].ID != "newsletter" {
		t.Errorf("list %+v", list)
	}
	if _, err := e.Store.CreateWebhook(store.Webhook{ServerID: srv.ID, URL: "https://hooks.example/", MessageStream: "newsletter",
		Triggers: store.WebhookTriggers{SubscriptionChange: true}}); err != nil {
		t.Fatal(err)
	}

	send := func(stream, to string) (int, []byte) {
		return e.server(http.MethodPost, "/email", token, map[string]any{"From": "news@example.com", "To": to, "Subject": "Issue 1", "TextBody": "News.", "MessageStream": stream})
	}
	status, body = send("newsletter", "reader@example.net, other@example.net")
	wantError(t, status, body, http.StatusUnprocessableEntity, 300)
	status, body = send("newsletter", "Reader@example.net")
	var sent api.EmailResponse
	decodeInto(t, status, body, &sent)
	e.WaitFinal(srv.ID, sent.MessageID)
	got := e.Peer.Messages()
	if len(got) != 1 {
		t.Fatalf("%d messages at the peer", len(got))
	}
	raw := got[0].Data
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	link := strings.Trim(ent.Header.Get("List-Unsubscribe"), "<>")
	if !strings.HasPrefix(link, "http://postern.test/unsubscribe/") || ent.Header.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Fatalf("header:\n%s", header(raw))
	}
	for _, v := range dkimtest.Verify(t, raw, dkimtest.Records(keys)) {
		if v.Err != nil || !strings.Contains(strings.ToLower(strings.Join(v.HeaderKeys, ":")), "list-unsubscribe-post") {
			t.Errorf("DKIM %s: %v, signed %v", v.Domain, v.Err, v.HeaderKeys)
		}
	}

	// The link answers on the API; a GET (a mail filter fetching it)
	// only shows a page.
	u, _ := url.Parse(link)
	path := u.Path
	resp, err := httpClient.Get(e.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<form method=\"post\">") {
		t.Errorf("GET: %d %s", resp.StatusCode, page)
	}
	if _, ok, _ := e.Store.StreamSuppressed(srv.ID, "newsletter", "reader@example.net"); ok {
		t.Fatal("a GET unsubscribed the recipient")
	}
	resp, err = httpClient.Post(e.URL+path, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("one-click POST: %d", resp.StatusCode)
	}
	if sup, ok, _ := e.Store.StreamSuppressed(srv.ID, "newsletter", "reader@example.net"); !ok || sup.Origin != "Recipient" {
		t.Errorf("after the POST: %+v, %v", sup, ok)
	}
	calls, _ := e.Store.ClaimWebhookDeliveries(time.Now(), time.Minute, 10)
	var change map[string]any
	if len(calls) != 1 || json.Unmarshal(calls[0].Payload, &change) != nil || change["RecordType"] != "SubscriptionChange" ||
		change["Recipient"] != "Reader@example.net" || change["MessageID"] != sent.MessageID || change["SuppressSending"] != true {
		t.Errorf("webhook calls %+v: %v", calls, change)
	}

	// Suppressed in that stream only.
	status, body = send("newsletter", "reader@example.net")
	wantError(t, status, body, http.StatusUnprocessableEntity, 406)
	status, body = send("outbound", "reader@example.net")
	if status != http.StatusOK {
		t.Errorf("the transactional stream: %d %s", status, body)
	}
	var dump api.SuppressionDump
	status, body = e.server(http.MethodGet, "/message-streams/newsletter/suppressions/dump", token, nil)
	decodeInto(t, status, body, &dump)
	if len(dump.Suppressions) != 1 || dump.Suppressions[0].EmailAddress != "reader@example.net" || dump.Suppressions[0].Origin != "Recipient" ||
		dump.Suppressions[0].SuppressionReason != "ManualSuppression" {
		t.Errorf("dump %+v", dump)
	}

	// A link altered to name another recipient is refused.
	forged := strings.Replace(path, path[len("/unsubscribe/"):len("/unsubscribe/")+4], "AAAA", 1)
	resp, err = httpClient.Post(e.URL+forged, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a forged link: %d", resp.StatusCode)
	}

	// Archived, it sends nothing; unarchived, again.
	status, body = e.server(http.MethodPost, "/message-streams/newsletter/archive", token, nil)
	var archived api.StreamArchived
	decodeInto(t, status, body, &archived)
	if archived.ID != "newsletter" || archived.ExpectedPurgeDate.Before(time.Now()) {
		t.Errorf("archive %+v", archived)
	}
	status, body = send("newsletter", "new@example.net")
	wantError(t, status, body, http.StatusUnprocessableEntity, 1235)
	status, body = e.server(http.MethodPost, "/message-streams/newsletter/unarchive", token, nil)
	decodeInto(t, status, body, &st)
	if st.ArchivedAt != nil {
		t.Errorf("unarchived %+v", st)
	}
	if status, body = send("newsletter", "new@example.net"); status != http.StatusOK {
		t.Errorf("after unarchive: %d %s", status, body)
	}
}

// TestStreamSuppressions: suppressions made and deleted over the API
// hold in their stream; bounces' inactive recipients show in every
// stream's dump.
func TestStreamSuppressions(t *testing.T) {
	e := newEnv(t, envOptions{peer: smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}}})
	e.route("example.net")
	srv, token := e.LiveServer("supp")
	var bounced api.EmailResponse
	status, data := e.server(http.MethodPost, "/email", token, map[string]any{"From": "a@example.com", "To": "gone@example.net", "Subject": "s", "TextBody": "t"})
	decodeInto(t, status, data, &bounced)
	e.WaitFinal(srv.ID, bounced.MessageID)
	body := map[string]any{"Suppressions": []map[string]string{{"EmailAddress": "manual@example.net"}, {"EmailAddress": "not an address"}}}
	status, data = e.server(http.MethodPost, "/message-streams/outbound/suppressions", token, body)
	var res api.SuppressionResults
	decodeInto(t, status, data, &res)
	if len(res.Suppressions) != 2 || res.Suppressions[0].Status != "Suppressed" || res.Suppressions[1].Status != "Failed" {
		t.Errorf("suppress %+v", res)
	}
	var dump api.SuppressionDump
	status, data = e.server(http.MethodGet, "/message-streams/outbound/suppressions/dump", token, nil)
	decodeInto(t, status, data, &dump)
	reasons := map[string]string{}
	for _, s := range dump.Suppressions {
		reasons[s.EmailAddress] = s.SuppressionReason + "/" + s.Origin
	}
	if len(reasons) != 2 || reasons["manual@example.net"] != "ManualSuppression/Customer" || reasons["gone@example.net"] != "HardBounce/Recipient" {
		t.Errorf("dump %+v", dump)
	}
	status, data = e.server(http.MethodPost, "/email", token, map[string]any{"From": "a@example.com", "To": "manual@example.net", "Subject": "s", "TextBody": "t"})
	wantError(t, status, data, http.StatusUnprocessableEntity, 406)
	status, data = e.server(http.MethodPost, "/message-streams/outbound/suppressions/delete", token, map[string]any{"Suppressions": []map[string]string{{"EmailAddress": "manual@example.net"}}})
	decodeInto(t, status, data, &res)
	if len(res.Suppressions) != 1 || res.Suppressions[0].Status != "Deleted" {
		t.Errorf("delete %+v", res)
	}
	status, data = e.server(http.MethodPost, "/email", token, map[string]any{"From": "a@example.com", "To": "manual@example.net", "Subject": "s", "TextBody": "t"})
	if status != http.StatusOK {
		t.Errorf("after the delete: %d %s", status, data)
	}
	status, data = e.server(http.MethodGet, "/message-streams/missing/suppressions/dump", token, nil)
	wantError(t, status, data, http.StatusNotFound, 1235)
}
