package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	msgdkim "github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/internal/testutil/dkimtest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/store"
)

// TestSendEmail sends a message with text, HTML, an attachment and an
// inline image over POST /email, and reads it as the receiving server
// got it: go-message parses it, its DKIM signatures verify, and the
// parts have the names and encodings they should.
func TestSendEmail(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.route("example.net")
	srv, token := e.LiveServer("http")
	keys := e.SendingDomain(srv.AccountID, "example.com")
	pdf := []byte("%PDF-1.4\n% a report\n")
	png := []byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0x0d}
	long := strings.Repeat("<td>a cell of a wide table</td>", 60)
	status, body := e.server(http.MethodPost, "/email", token, map[string]any{
		"From": "Café App <app@example.com>", "To": "Zoë <zoe@example.net>, bob@example.net", "Cc": "carol@example.net",
		"Bcc": "audit@example.net", "ReplyTo": "help@example.com", "Subject": "Your report — ready",
		"Tag": "reports", "Metadata": map[string]string{"user": "42"},
		"TextBody": "Your report is attached.\nÀ bientôt.", "HtmlBody": `<p>Report <img src="cid:logo.png"></p><table>` + long + `</table>`,
		"Headers": []map[string]string{{"Name": "X-Campaign", "Value": "winter"}},
		"Attachments": []map[string]string{
			{"Name": "report.pdf", "Content": base64.StdEncoding.EncodeToString(pdf), "ContentType": "application/pdf"},
			{"Name": "logo.png", "Content": base64.StdEncoding.EncodeToString(png), "ContentType": "image/png", "ContentID": "cid:logo.png"},
		},
		"TrackOpens": true, "TrackLinks": "HtmlAndText", "MessageStream": "outbound",
	})
	var resp api.EmailResponse
	decodeInto(t, status, body, &resp)
	if resp.ErrorCode != 0 || resp.Message != "OK" || resp.To != "Zoë <zoe@example.net>, bob@example.net" || resp.MessageID == "" ||
		time.Since(resp.SubmittedAt) > time.Minute {
		t.Fatalf("answer %+v", resp)
	}
	m, err := e.Store.Message(srv.ID, resp.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Tag != "reports" || m.Metadata["user"] != "42" || len(m.Recipients) != 4 || m.MessageStream != "outbound" ||
		len(m.Bcc) != 1 || fmt.Sprint(m.Attachments) != "[logo.png report.pdf]" {
		t.Errorf("stored %+v", m)
	}
	e.WaitFinal(srv.ID, resp.MessageID)

	got := e.Peer.Messages()
	if len(got) != 1 || len(got[0].To) != 4 {
		t.Fatalf("the peer got %d messages: %+v", len(got), got)
	}
	raw := got[0].Data
	verifications, err := msgdkim.VerifyWithOptions(bytes.NewReader(raw), &msgdkim.VerifyOptions{LookupTXT: dkimtest.Records(keys)})
	if err != nil || len(verifications) != 2 {
		t.Fatalf("DKIM: %v, %d signatures", err, len(verifications))
	}
	for _, v := range verifications {
		if v.Err != nil || v.Domain != "example.com" {
			t.Errorf("DKIM %s: %v", v.Domain, v.Err)
		}
	}
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Fatalf("a line of %d octets", len(line))
		}
	}
	ent, err := gomessage.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	h := gomail.Header{Header: ent.Header}
	if s, _ := h.Subject(); s != "Your report — ready" {
		t.Errorf("Subject %q", s)
	}
	if from, _ := h.AddressList("From"); len(from) != 1 || from[0].Name != "Café App" || from[0].Address != "app@example.com" {
		t.Errorf("From %v", from)
	}
	if to, _ := h.AddressList("To"); len(to) != 2 || to[0].Name != "Zoë" {
		t.Errorf("To %v", to)
	}
	if h.Get("Bcc") != "" || h.Get("X-Campaign") != "winter" || h.Get("Reply-To") != "<help@example.com>" ||
		!strings.Contains(h.Get("Received"), "with HTTP id "+resp.MessageID) || h.Get("Message-Id") != "<"+resp.MessageID+"@mx.postern.test>" {
		t.Errorf("header:\n%s", header(raw))
	}
	type leaf struct{ path, contentType, disposition, filename, cid, encoding, body string }
	var leaves []leaf
	ent.Walk(func(path []int, p *gomessage.Entity, err error) error {
		mt, _, _ := p.Header.ContentType()
		if strings.HasPrefix(mt, "multipart/") {
			leaves = append(leaves, leaf{path: fmt.Sprint(path), contentType: mt})
			return nil
		}
		disp, params, _ := p.Header.ContentDisposition()
		b, _ := io.ReadAll(p.Body)
		leaves = append(leaves, leaf{fmt.Sprint(path), mt, disp, params["filename"], p.Header.Get("Content-Id"), p.Header.Get("Content-Transfer-Encoding"), string(b)})
		return nil
	})
	want := []leaf{
		{path: "[]", contentType: "multipart/mixed"},
		{path: "[0]", contentType: "multipart/related"},
		{path: "[0 0]", contentType: "multipart/alternative"},
		{"[0 0 0]", "text/plain", "", "", "", "quoted-printable", "Your report is attached.\r\nÀ bientôt."},
		{"[0 0 1]", "text/html", "", "", "", "quoted-printable", `<p>Report <img src="cid:logo.png"></p><table>` + long + `</table>`},
		{"[0 1]", "image/png", "inline", "logo.png", "<logo.png>", "base64", string(png)},
		{"[1]", "application/pdf", "attachment", "report.pdf", "", "base64", string(pdf)},
	}
	if len(leaves) != len(want) {
		t.Fatalf("parts %+v", leaves)
	}
	for i := range want {
		if leaves[i] != want[i] {
			t.Errorf("part %d: %+v\nwant %+v", i, leaves[i], want[i])
		}
	}
}

func header(raw []byte) string {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return string(raw[:i])
	}
	return string(raw)
}

// TestSendEmailRefusals: each rule SMTP applies answers with Postmark's
// ErrorCode, and nothing is filed.
func TestSendEmailRefusals(t *testing.T) {
	registered := store.PolicyRegistered
	e := newEnv(t, envOptions{policy: &registered, peer: smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}}})
	e.route("example.net")
	srv, token := e.LiveServer("http")
	e.SendingDomain(srv.AccountID, "example.com")
	// A hard bounce makes gone@ inactive for this server.
	status, body := e.server(http.MethodPost, "/email", token, map[string]any{"From": "app@example.com", "To": "gone@example.net", "Subject": "s", "TextBody": "t"})
	var first api.EmailResponse
	decodeInto(t, status, body, &first)
	e.WaitFinal(srv.ID, first.MessageID)
	ok := func() map[string]any {
		return map[string]any{"From": "app@example.com", "To": "someone@example.net", "Subject": "s", "TextBody": "t"}
	}
	with := func(k string, v any) map[string]any {
		m := ok()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@example.net", i)
	}
	for _, c := range []struct {
		name       string
		body       any
		status     int
		code       int
		mentioning string
	}{
		{"no From", with("From", nil), 422, 300, "From"},
		{"bad From", with("From", "not an address"), 422, 300, "From"},
		{"bad To", with("To", "a@b@c"), 422, 300, "To"},
		{"no recipient", with("To", nil), 422, 300, "recipient"},
		{"no body", with("TextBody", nil), 422, 300, "TextBody"},
		{"too many recipients", with("To", strings.Join(many, ",")), 422, 300, "51 recipients"},
		{"header injection", with("Headers", []map[string]string{{"Name": "X-A", "Value": "x\r\nBcc: evil@example.org"}}), 422, 300, "line break"},
		{"reserved header", with("Headers", []map[string]string{{"Name": "Content-Type", "Value": "text/html"}}), 422, 300, "Content-Type"},
		{"bad attachment", with("Attachments", []map[string]string{{"Name": "a.bin", "Content": "%%%"}}), 422, 300, "base64"},
		{"unknown stream", with("MessageStream", "broadcasts"), 422, 1235, "broadcasts"},
		{"another's domain", with("From", "app@elsewhere.example"), 422, 400, "elsewhere.example"},
		{"inactive recipient", with("Cc", "gone@example.net"), 422, 406, "gone@example.net"},
		{"private address literal", with("To", "x@[127.0.0.1]"), 422, 300, "127.0.0.1"},
		{"not JSON", "{", 422, 402, ""},
	} {
		status, body := e.server(http.MethodPost, "/email", token, c.body)
		var got api.Error
		if err := json.Unmarshal(body, &got); err != nil || status != c.status || got.ErrorCode != c.code || !strings.Contains(got.Message, c.mentioning) {
			t.Errorf("%s: %d %s; want %d with ErrorCode %d mentioning %q", c.name, status, body, c.status, c.code, c.mentioning)
		}
	}
	status, body = e.server(http.MethodPost, "/email", "not-a-token", ok())
	wantError(t, status, body, http.StatusUnauthorized, 10)

	// The rate limit, counted where the message is filed.
	limited := srv
	limited.RateLimitPerMinute = 2 // the message to gone@ is one
	if err := e.Store.UpdateServer(limited); err != nil {
		t.Fatal(err)
	}
	status, body = e.server(http.MethodPost, "/email", token, ok())
	if status != http.StatusOK {
		t.Fatalf("first message: %d %s", status, body)
	}
	status, body = e.server(http.MethodPost, "/email", token, ok())
	wantError(t, status, body, http.StatusTooManyRequests, 429)
	if msgs, _ := e.Store.SentSince(srv.ID, time.Now().Add(-time.Hour), 100); msgs != 2 {
		t.Errorf("%d messages filed, want the two accepted", msgs)
	}
}

// TestSendEmailBatch: one answer per message, in order, refusals in
// place.
func TestSendEmailBatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.route("example.net")
	srv, token := e.LiveServer("batch")
	var batch []map[string]any
	for i := range 20 {
		batch = append(batch, map[string]any{"From": "app@example.com", "To": fmt.Sprintf("r%d@example.net", i), "Subject": fmt.Sprint(i), "TextBody": "t"})
	}
	batch[7]["From"] = "nobody"
	status, body := e.server(http.MethodPost, "/email/batch", token, batch)
	var got []api.EmailResponse
	decodeInto(t, status, body, &got)
	if len(got) != 20 {
		t.Fatalf("%d answers", len(got))
	}
	for i, r := range got {
		if i == 7 {
			if r.ErrorCode != 300 || r.MessageID != "" {
				t.Errorf("message 7: %+v, want ErrorCode 300", r)
			}
			continue
		}
		m, err := e.Store.Message(srv.ID, r.MessageID)
		if r.ErrorCode != 0 || err != nil || m.Subject != fmt.Sprint(i) || r.To != fmt.Sprintf("r%d@example.net", i) {
			t.Errorf("message %d: %+v, stored %+v, %v", i, r, m, err)
		}
	}
	tooMany := make([]map[string]any, api.MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = batch[0]
	}
	status, body = e.server(http.MethodPost, "/email/batch", token, tooMany)
	wantError(t, status, body, http.StatusUnprocessableEntity, 300)
}
