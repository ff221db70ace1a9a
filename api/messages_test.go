package api_test

import (
	"encoding/base64"
	"encoding/json"
	"github.com/postern/postern/api"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/store"
)

// The peer's answers to RCPT: nobody* does not exist, full* has a full
// mailbox, later* is deferred; everyone else is accepted.
var peerReplies = smtptest.Options{Rcpt: func(to string) error {
	switch {
	case strings.HasPrefix(to, "nobody"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	case strings.HasPrefix(to, "full"):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	case strings.HasPrefix(to, "later"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	return nil
}}

var htmlPart = "<p>Hello <b>Alice</b></p>"

// welcomeMIME is a multipart message: quoted-printable text, base64
// HTML and a PDF attachment.
var welcomeMIME = `From: App <app@example.com>
To: Alice <alice@example.net>
Subject: Welcome aboard
X-PM-Tag: welcome
X-PM-Metadata-user: 42
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mixed"

--mixed
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello Alice, caf=C3=A9 time=
 is at 10.
--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

` + base64.StdEncoding.EncodeToString([]byte(htmlPart)) + `
--alt--
--mixed
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--mixed--
`

// fixture is a Postern with two Live servers, A and B, and mail sent
// through SMTP and delivered, bounced or deferred by the relay:
//
//	A: welcome  (tag welcome, alice: Delivered; multipart with attachment)
//	   invoice  (tag invoice, bob + Cc carol: Delivered)
//	   again    (tag welcome, nobody: HardBounce, dave: Delivered, full: SoftBounce)
//	   deferred (no tag, later: Transient, still Queued)
//	B: lost     (tag b, nobody2: HardBounce)
type fixture struct {
	*env
	A, B                              store.Server
	tokA, tokB                        string
	welcome, invoice, again, deferred string
	lost                              string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	e := newEnv(t, envOptions{peer: peerReplies})
	f := &fixture{env: e}
	f.A, f.tokA = e.LiveServer("Live A")
	f.B, f.tokB = e.LiveServer("Live B")
	e.route("example.net")
	e.route("example.org")

	f.welcome = e.Send(f.tokA, "app@example.com", []string{"alice@example.net"}, welcomeMIME)
	e.WaitFinal(f.A.ID, f.welcome)
	f.invoice = e.Send(f.tokA, "billing@example.com", []string{"bob@example.org", "carol@example.net"},
		"From: Billing <billing@example.com>\nTo: bob@example.org\nCc: Carol <carol@example.net>\nSubject: Your invoice\nX-PM-Tag: invoice\n\nPlease pay.\n")
	e.WaitFinal(f.A.ID, f.invoice)
	f.again = e.Send(f.tokA, "app@example.com", []string{"nobody@example.net", "dave@example.net", "full@example.org"},
		"From: app@example.com\nTo: nobody@example.net, dave@example.net, full@example.org\nSubject: Welcome again\nX-PM-Tag: welcome\n\nHi.\n")
	e.WaitFinal(f.A.ID, f.again)
	f.deferred = e.Send(f.tokA, "app@example.com", []string{"later@example.net"},
		"From: app@example.com\nTo: later@example.net\nSubject: Deferred\n\nSoon.\n")
	f.waitEvent(f.A.ID, f.deferred, store.EventTransient)
	f.lost = e.Send(f.tokB, "b@example.com", []string{"nobody2@example.org"},
		"From: b@example.com\nTo: nobody2@example.org\nSubject: Lost\nX-PM-Tag: b\n\nGone.\n")
	e.WaitFinal(f.B.ID, f.lost)
	return f
}

// waitEvent waits until a message has an event of type typ.
func (e *env) waitEvent(serverID int64, id, typ string) {
	e.T.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := e.Store.Events(serverID, id)
		if err != nil {
			e.T.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Type == typ {
				return
			}
		}
		e.Notify()
		time.Sleep(10 * time.Millisecond)
	}
	e.T.Fatalf("message %s has no %s event", id, typ)
}

type addressOut struct {
	Email string
	Name  *string
}

type messageOut struct {
	Tag           string
	MessageID     string
	MessageStream string
	To, Cc, Bcc   []addressOut
	Recipients    []string
	ReceivedAt    time.Time
	From          string
	Subject       string
	Attachments   []string
	Status        string
	TrackOpens    bool
	TrackLinks    string
	Metadata      map[string]string
}

type messageList struct {
	TotalCount int
	Messages   []messageOut
}

func (f *fixture) search(t *testing.T, token, query string) messageList {
	t.Helper()
	var out messageList
	status, body := f.server(http.MethodGet, "/messages/outbound?"+query, token, nil)
	decodeInto(t, status, body, &out)
	return out
}

func ids(ms []messageOut) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.MessageID)
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func TestMessages(t *testing.T) {
	f := newFixture(t)
	all := []string{f.deferred, f.again, f.invoice, f.welcome}

	t.Run("list", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/messages/outbound?count=10&offset=0", f.tokA, nil)
		golden(t, "messages_list", body)
		var l messageList
		decodeInto(t, status, body, &l)
		if l.TotalCount != 4 {
			t.Fatalf("TotalCount %d", l.TotalCount)
		}
		sameIDs(t, "newest first", ids(l.Messages), all)
		m := l.Messages[3] // welcome
		stored, err := f.Store.Message(f.A.ID, f.welcome)
		if err != nil {
			t.Fatal(err)
		}
		if m.Tag != "welcome" || m.MessageStream != "outbound" || m.From != "App <app@example.com>" ||
			m.Subject != "Welcome aboard" || m.Status != "Sent" || m.TrackOpens || m.TrackLinks != "None" ||
			m.Metadata["user"] != "42" || len(m.Attachments) != 1 || m.Attachments[0] != "report.pdf" ||
			!m.ReceivedAt.Equal(stored.ReceivedAt) {
			t.Errorf("welcome: %+v", m)
		}
		if len(m.To) != 1 || m.To[0].Email != "alice@example.net" || m.To[0].Name == nil || *m.To[0].Name != "Alice" ||
			len(m.Cc) != 0 || len(m.Bcc) != 0 || strings.Join(m.Recipients, ",") != "alice@example.net" {
			t.Errorf("welcome addresses: %+v", m)
		}
		inv := l.Messages[2]
		if len(inv.Cc) != 1 || inv.Cc[0].Email != "carol@example.net" || len(inv.To) != 1 || inv.To[0].Name != nil {
			t.Errorf("invoice addresses: %+v", inv)
		}
		if l.Messages[1].Status != "Partially sent" || l.Messages[0].Status != "Queued" {
			t.Errorf("statuses %q %q", l.Messages[1].Status, l.Messages[0].Status)
		}
		if l.Messages[0].Metadata == nil || l.Messages[0].Attachments == nil || l.Messages[0].Cc == nil {
			t.Errorf("empty fields must be [] and {}, not null: %+v", l.Messages[0])
		}
	})

	t.Run("paging", func(t *testing.T) {
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"count=1&offset=0", all[:1]},
			{"count=2&offset=1", all[1:3]},
			{"count=500&offset=3", all[3:]},
			{"count=10&offset=4", nil},
			{"count=500&offset=9500", nil}, // count+offset exactly 10,000
		} {
			l := f.search(t, f.tokA, c.query)
			if l.TotalCount != 4 {
				t.Errorf("%s: TotalCount %d", c.query, l.TotalCount)
			}
			sameIDs(t, c.query, ids(l.Messages), c.want)
		}
		for _, q := range []string{"", "count=10", "offset=0", "count=0&offset=0", "count=501&offset=0",
			"count=x&offset=0", "count=10&offset=-1", "count=500&offset=9501"} {
			status, body := f.server(http.MethodGet, "/messages/outbound?"+q, f.tokA, nil)
			wantError(t, status, body, http.StatusUnprocessableEntity, 700)
		}
	})

	t.Run("filters", func(t *testing.T) {
		inv, err := f.Store.Message(f.A.ID, f.invoice)
		if err != nil {
			t.Fatal(err)
		}
		again, err := f.Store.Message(f.A.ID, f.again)
		if err != nil {
			t.Fatal(err)
		}
		today := time.Now().UTC().Format("2006-01-02")
		tomorrow := time.Now().UTC().Add(24 * time.Hour).Format("2006-01-02")
		yesterday := time.Now().UTC().Add(-24 * time.Hour).Format("2006-01-02")
		for _, c := range []struct {
			filter string
			want   []string
		}{
			{"recipient=alice@example.net", []string{f.welcome}},
			{"recipient=ALICE@example.NET", []string{f.welcome}},
			{"recipient=carol@example.net", []string{f.invoice}}, // a Cc
			{"recipient=nobody@example.net", []string{f.again}},
			{"recipient=zed@example.net", nil},
			{"fromemail=billing@example.com", []string{f.invoice}},
			{"fromemail=app@example.com", []string{f.deferred, f.again, f.welcome}},
			{"tag=welcome", []string{f.again, f.welcome}},
			{"tag=Invoice", []string{f.invoice}},
			{"tag=none", nil},
			{"status=queued", []string{f.deferred}},
			{"status=sent", all[1:]},
			{"status=processed", all[1:]},
			{"subject=welcome", []string{f.again, f.welcome}},
			{"subject=INVOICE", []string{f.invoice}},
			{"messagestream=outbound", all},
			{"messagestream=broadcast", nil},
			{"metadata_user=42", []string{f.welcome}},
			{"metadata_user=43", nil},
			{"fromdate=" + today, all},
			{"todate=" + today, all},
			{"fromdate=" + tomorrow, nil},
			{"todate=" + yesterday, nil},
			{"fromdate=" + url.QueryEscape(inv.ReceivedAt.Format(time.RFC3339Nano)), all[:3]},
			{"todate=" + url.QueryEscape(inv.ReceivedAt.Format(time.RFC3339Nano)), all[2:]},
			{"fromdate=" + url.QueryEscape(inv.ReceivedAt.Format(time.RFC3339Nano)) +
				"&todate=" + url.QueryEscape(again.ReceivedAt.Format(time.RFC3339Nano)), all[1:3]},
			{"tag=welcome&recipient=dave@example.net&status=sent", []string{f.again}},
		} {
			l := f.search(t, f.tokA, "count=100&offset=0&"+c.filter)
			if l.TotalCount != len(c.want) {
				t.Errorf("%s: TotalCount %d, want %d", c.filter, l.TotalCount, len(c.want))
			}
			sameIDs(t, c.filter, ids(l.Messages), c.want)
		}
		// Filters and paging together: the total counts every match.
		l := f.search(t, f.tokA, "count=1&offset=1&fromemail=app@example.com")
		if l.TotalCount != 3 {
			t.Errorf("TotalCount %d", l.TotalCount)
		}
		sameIDs(t, "paged filter", ids(l.Messages), []string{f.again})
		for _, q := range []string{"status=bounced", "fromdate=yesterday", "todate=2024-13-01",
			"fromdate=" + tomorrow + "&todate=" + today} {
			status, body := f.server(http.MethodGet, "/messages/outbound?count=10&offset=0&"+q, f.tokA, nil)
			wantError(t, status, body, http.StatusUnprocessableEntity, 700)
		}
	})

	t.Run("details", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/messages/outbound/"+f.welcome+"/details", f.tokA, nil)
		golden(t, "message_details", body)
		var d struct {
			messageOut
			TextBody, HtmlBody, Body string
			MessageEvents            []struct {
				Recipient  string
				Type       string
				ReceivedAt time.Time
				Details    struct {
					DeliveryMessage, DestinationServer, DestinationIP string
					TLS                                               *api.TLSDetails
					Summary, BounceID                                 string // of a Bounced event
				}
			}
		}
		decodeInto(t, status, body, &d)
		raw, err := f.Store.RawMessage(f.A.ID, f.welcome)
		if err != nil {
			t.Fatal(err)
		}
		if d.MessageID != f.welcome || d.Subject != "Welcome aboard" || d.Tag != "welcome" || d.Attachments[0] != "report.pdf" {
			t.Errorf("details: %+v", d.messageOut)
		}
		if d.TextBody != "Hello Alice, café time is at 10." {
			t.Errorf("TextBody %q", d.TextBody)
		}
		if d.HtmlBody != htmlPart {
			t.Errorf("HtmlBody %q", d.HtmlBody)
		}
		if d.Body != string(raw) {
			t.Errorf("Body is not the stored message")
		}
		if len(d.MessageEvents) != 1 {
			t.Fatalf("events %+v", d.MessageEvents)
		}
		ev := d.MessageEvents[0]
		if ev.Recipient != "alice@example.net" || ev.Type != "Delivered" || ev.ReceivedAt.IsZero() ||
			!strings.HasPrefix(ev.Details.DeliveryMessage, "250") || ev.Details.DestinationServer != "mx.example.net" ||
			ev.Details.DestinationIP != "127.0.0.1" {
			t.Errorf("event %+v", ev)
		}
		// The peer offers no STARTTLS, and nothing demands TLS of it.
		if tls := ev.Details.TLS; tls == nil || tls.Policy != "none" || tls.Version != "" || tls.CertificateVerified {
			t.Errorf("event TLS %+v, want policy none", tls)
		}

		// Bounced events carry a Summary and their BounceID.
		status, body = f.server(http.MethodGet, "/messages/outbound/"+f.again+"/details", f.tokA, nil)
		d.MessageEvents = nil // json would merge into the old maps
		decodeInto(t, status, body, &d)
		type bounced struct{ Summary, BounceID string }
		bounces := map[string]bounced{}
		for _, ev := range d.MessageEvents {
			if ev.Type == "Bounced" {
				bounces[ev.Recipient] = bounced{ev.Details.Summary, ev.Details.BounceID}
				if ev.Details.DeliveryMessage != "" || ev.Details.TLS != nil {
					t.Errorf("a Bounced event has delivery details: %+v", ev.Details)
				}
			}
		}
		hard := bounces["nobody@example.net"]
		if len(bounces) != 2 || hard.Summary == "" || hard.BounceID == "" {
			t.Fatalf("bounced events %+v", bounces)
		}
		status, body = f.server(http.MethodGet, "/bounces/"+hard.BounceID, f.tokA, nil)
		var b struct {
			Email, Type string
		}
		decodeInto(t, status, body, &b)
		if b.Email != "nobody@example.net" || b.Type != "HardBounce" {
			t.Errorf("BounceID names %+v", b)
		}

		// Transient events: the same Details as Delivered.
		status, body = f.server(http.MethodGet, "/messages/outbound/"+f.deferred+"/details", f.tokA, nil)
		d.MessageEvents = nil
		decodeInto(t, status, body, &d)
		ev = d.MessageEvents[0]
		if d.Status != "Queued" || ev.Type != "Transient" || !strings.HasPrefix(ev.Details.DeliveryMessage, "451") ||
			ev.Details.DestinationServer != "mx.example.net" {
			t.Errorf("deferred: %s %+v", d.Status, ev)
		}
	})

	t.Run("dump", func(t *testing.T) {
		status, body := f.server(http.MethodGet, "/messages/outbound/"+f.welcome+"/dump", f.tokA, nil)
		golden(t, "message_dump", body)
		var d struct{ Body string }
		decodeInto(t, status, body, &d)
		raw, err := f.Store.RawMessage(f.A.ID, f.welcome)
		if err != nil {
			t.Fatal(err)
		}
		if d.Body != string(raw) || !strings.Contains(d.Body, "Subject: Welcome aboard") {
			t.Errorf("dump %q", d.Body)
		}
	})

	t.Run("not found", func(t *testing.T) {
		for _, suffix := range []string{"/details", "/dump"} {
			status, body := f.server(http.MethodGet, "/messages/outbound/"+store.NewMessageID()+suffix, f.tokA, nil)
			wantError(t, status, body, http.StatusNotFound, 701)
			status, body = f.server(http.MethodGet, "/messages/outbound/not-a-uuid"+suffix, f.tokA, nil)
			wantError(t, status, body, http.StatusNotFound, 701)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		missing := store.NewMessageID()
		for _, suffix := range []string{"/details", "/dump"} {
			ms, mb := f.server(http.MethodGet, "/messages/outbound/"+missing+suffix, f.tokB, nil)
			for _, id := range []string{f.welcome, f.again, f.deferred} {
				status, body := f.server(http.MethodGet, "/messages/outbound/"+id+suffix, f.tokB, nil)
				if status != ms || string(body) != string(mb) {
					t.Errorf("B reading A's %s%s: %d %s; a missing one: %d %s", id, suffix, status, body, ms, mb)
				}
				wantError(t, status, body, http.StatusNotFound, 701)
			}
			// And the other way round.
			status, body := f.server(http.MethodGet, "/messages/outbound/"+f.lost+suffix, f.tokA, nil)
			wantError(t, status, body, http.StatusNotFound, 701)
			// The Sandbox server of the installation sees none either.
			status, body = f.server(http.MethodGet, "/messages/outbound/"+f.welcome+suffix, f.Inst.ServerToken, nil)
			wantError(t, status, body, http.StatusNotFound, 701)
		}
		l := f.search(t, f.tokB, "count=500&offset=0")
		sameIDs(t, "B's messages", ids(l.Messages), []string{f.lost})
		if l.TotalCount != 1 {
			t.Errorf("B's TotalCount %d", l.TotalCount)
		}
		for _, q := range []string{"recipient=alice@example.net", "tag=welcome", "fromemail=app@example.com"} {
			if l := f.search(t, f.tokB, "count=500&offset=0&"+q); l.TotalCount != 0 || len(l.Messages) != 0 {
				t.Errorf("B searching %s: %+v", q, l)
			}
		}
	})

	t.Run("tokens", func(t *testing.T) {
		for _, path := range []string{"/messages/outbound?count=1&offset=0", "/messages/outbound/" + f.welcome + "/details", "/messages/outbound/" + f.welcome + "/dump"} {
			status, body := f.server(http.MethodGet, path, "", nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
			status, body = f.server(http.MethodGet, path, "wrong", nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
			status, body = f.account(http.MethodGet, path, f.Inst.AccountToken, nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
			status, body = f.server(http.MethodGet, path, f.Inst.AccountToken, nil)
			wantError(t, status, body, http.StatusUnauthorized, 10)
		}
	})
}

// A message of a bare text/plain body with no MIME headers has its text
// as TextBody and no HtmlBody; the installation's Sandbox server's
// messages are delivered without events reaching anyone.
func TestMessageDetailsPlainAndSandbox(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.Send(e.Inst.ServerToken, "app@example.com", []string{"x@example.net"}, "Subject: plain\n\nJust text.\n")
	e.WaitFinal(e.Inst.ServerID, id)
	status, body := e.server(http.MethodGet, "/messages/outbound/"+id+"/details", e.Inst.ServerToken, nil)
	var d struct {
		TextBody, HtmlBody string
		Status             string
		MessageEvents      []struct {
			Type    string
			Details map[string]string
		}
	}
	decodeInto(t, status, body, &d)
	if d.TextBody != "Just text.\r\n" || d.HtmlBody != "" || d.Status != "Sent" {
		t.Errorf("%+v", d)
	}
	if len(d.MessageEvents) != 1 || d.MessageEvents[0].Type != "Delivered" || !strings.Contains(d.MessageEvents[0].Details["DeliveryMessage"], "Sandbox") {
		t.Errorf("events %+v", d.MessageEvents)
	}
	var raw map[string]any
	_ = json.Unmarshal(body, &raw)
	for _, k := range []string{"TextBody", "HtmlBody", "Body", "MessageEvents", "Attachments", "Metadata", "To", "Cc", "Bcc"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %s in %s", k, body)
		}
	}
}

// A message sent in Latin-1 reads as UTF-8 in the API: its subject's
// encoded words, its text part and its attachment's name.
func TestMessageDetailsDecodeLatin1(t *testing.T) {
	e := newEnv(t, envOptions{})
	raw := "Subject: =?ISO-8859-1?Q?Caf=E9?=\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n" +
		"--b\nContent-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: 8bit\n\nCaf\xe9 cr\xe8me\n" +
		"--b\nContent-Type: application/pdf; name=\"=?ISO-8859-1?Q?r=E9sum=E9.pdf?=\"\nContent-Disposition: attachment\n\n%PDF\n--b--\n"
	id := e.Send(e.Inst.ServerToken, "app@example.com", []string{"x@example.net"}, raw)
	e.WaitFinal(e.Inst.ServerID, id)
	status, body := e.server(http.MethodGet, "/messages/outbound/"+id+"/details", e.Inst.ServerToken, nil)
	var d struct {
		Subject, TextBody string
		Attachments       []string
	}
	decodeInto(t, status, body, &d)
	if d.Subject != "Café" || d.TextBody != "Café crème" || len(d.Attachments) != 1 || d.Attachments[0] != "résumé.pdf" {
		t.Errorf("subject %q text %q attachments %q", d.Subject, d.TextBody, d.Attachments)
	}
}
