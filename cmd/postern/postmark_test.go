package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gomessage "github.com/emersion/go-message"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// postmarkClientDir holds Postmark's official Node client, installed from
// its lock file by .ci/run (npm ci).
const postmarkClientDir = "testdata/postmark"

// TestPostmarkNodeClient runs Postmark's official Node client (postmark
// 5.1 on npm) against the real binary, with only the API address
// changed: sendEmail with text, HTML, an attachment and an inline image,
// sendEmailBatch, and a refusal the client raises as Postmark's error.
func TestPostmarkNodeClient(t *testing.T) {
	node := testutil.NeedTool(t, "node")
	if _, err := os.Stat(filepath.Join(postmarkClientDir, "node_modules", "postmark", "package.json")); err != nil {
		testutil.Unavailable(t, "Postmark's Node client is not installed: run npm ci --prefix cmd/postern/%s (%v)", postmarkClientDir, err)
	}

	dir := t.TempDir()
	inst, data := initialized(t, dir)
	st, err := bolt.Open(filepath.Join(data, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token := auth.NewToken()
	if _, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "node", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now()); err != nil {
		t.Fatal(err)
	}
	keys, err := dkim.Generate("example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDomain(store.Domain{AccountID: inst.AccountID, Name: "example.com", Keys: keys}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()

	dns := dnstest.New(t)
	dns.SetMX("example.net", []dnstest.MX{{Host: "mx.example.net", Pref: 10}})
	dns.SetA("mx.example.net", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{})
	p := startPostern(t, dir, []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()),
		"POSTERN_ALLOW_PRIVATE_DESTINATIONS=true", "POSTERN_SENDER_POLICY=registered",
		// hooks.example.org does not resolve here.
		"POSTERN_WEBHOOK_ALLOW_PRIVATE=true"}, "serve", "-smtp-addr", "127.0.0.1:0")
	apiAddr := p.listening(t, "api")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = postmarkClientDir
	cmd.Env = append(os.Environ(), "POSTERN_API="+apiAddr, "POSTMARK_SERVER_TOKEN="+token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node client.mjs: %v\n%s", err, stderr.String())
	}
	var got struct {
		SendEmail struct {
			To, MessageID, Message string
			ErrorCode              int
			SubmittedAt            time.Time
		}
		SendEmailBatch []struct {
			To, MessageID, Message string
			ErrorCode              int
		}
		Refused struct {
			Thrown     bool
			Name       string
			Code       int
			StatusCode int
			Message    string
		}
		CreateWebhook, GetWebhook, EditWebhook api.Webhook
		GetWebhooks, AfterDelete               api.WebhookList
		DeleteWebhook                          api.Error

		CreateMessageStream, EditMessageStream, GetMessageStream, UnarchiveMessageStream api.MessageStream
		ArchiveMessageStream                                                             api.StreamArchived
		GetMessageStreams                                                                api.MessageStreamList
		SendBroadcast                                                                    api.EmailResponse
		CreateSuppressions, DeleteSuppressions                                           api.SuppressionResults
		GetSuppressions, AfterDeleteSuppressions                                         api.SuppressionDump
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.SendEmail.ErrorCode != 0 || got.SendEmail.Message != "OK" || got.SendEmail.MessageID == "" || got.SendEmail.To != "Zoë <zoe@example.net>" {
		t.Errorf("sendEmail: %+v", got.SendEmail)
	}
	if b := got.SendEmailBatch; len(b) != 3 || b[0].ErrorCode != 0 || b[1].ErrorCode != 0 || b[2].ErrorCode != 300 || b[0].MessageID == "" || b[2].MessageID != "" {
		t.Errorf("sendEmailBatch: %+v", b)
	}
	if r := got.Refused; !r.Thrown || r.Code != 400 || r.StatusCode != 422 || !strings.Contains(r.Message, "elsewhere.example") {
		t.Errorf("a sender outside the account: %+v, want the client to throw Postmark's 400", r)
	}

	created := got.CreateWebhook
	if created.ID == 0 || created.Secret == "" || created.Url != "https://hooks.example.org/postmark" || created.HttpAuth == nil ||
		created.HttpAuth.Username != "hook" || !created.Triggers.Delivery.Enabled || !created.Triggers.Bounce.IncludeContent ||
		len(created.HttpHeaders) != 1 || created.HttpHeaders[0].Value != "crm" {
		t.Errorf("createWebhook: %+v", created)
	}
	if l := got.GetWebhooks.Webhooks; len(l) != 1 || l[0].ID != created.ID || l[0].Secret != "" {
		t.Errorf("getWebhooks: %+v", got.GetWebhooks)
	}
	if got.GetWebhook.ID != created.ID || got.GetWebhook.Secret != "" {
		t.Errorf("getWebhook: %+v", got.GetWebhook)
	}
	if e := got.EditWebhook; e.Url != "https://hooks.example.org/v2" || e.Triggers.Delivery.Enabled || e.HttpAuth == nil {
		t.Errorf("editWebhook: %+v", e)
	}
	if got.DeleteWebhook.ErrorCode != 0 || len(got.AfterDelete.Webhooks) != 0 {
		t.Errorf("deleteWebhook: %+v, then %+v", got.DeleteWebhook, got.AfterDelete)
	}

	if st := got.CreateMessageStream; st.ID != "newsletter" || st.MessageStreamType != "Broadcasts" || st.Description != "Monthly news" {
		t.Errorf("createMessageStream: %+v", st)
	}
	if got.EditMessageStream.Name != "The Newsletter" || got.GetMessageStream.Name != "The Newsletter" {
		t.Errorf("editMessageStream, getMessageStream: %+v, %+v", got.EditMessageStream, got.GetMessageStream)
	}
	if got.SendBroadcast.ErrorCode != 0 || got.SendBroadcast.MessageID == "" {
		t.Errorf("a broadcast: %+v", got.SendBroadcast)
	}
	if s := got.CreateSuppressions.Suppressions; len(s) != 1 || s[0].Status != "Suppressed" {
		t.Errorf("createSuppressions: %+v", s)
	}
	if s := got.GetSuppressions.Suppressions; len(s) != 1 || s[0].EmailAddress != "nomore@example.net" || s[0].SuppressionReason != "ManualSuppression" {
		t.Errorf("getSuppressions: %+v", s)
	}
	if len(got.DeleteSuppressions.Suppressions) != 1 || got.DeleteSuppressions.Suppressions[0].Status != "Deleted" || len(got.AfterDeleteSuppressions.Suppressions) != 0 {
		t.Errorf("deleteSuppressions: %+v, then %+v", got.DeleteSuppressions, got.AfterDeleteSuppressions)
	}
	if got.ArchiveMessageStream.ID != "newsletter" || got.GetMessageStreams.TotalCount != 2 || got.GetMessageStreams.MessageStreams[1].ArchivedAt == nil ||
		got.UnarchiveMessageStream.ArchivedAt != nil {
		t.Errorf("archive: %+v; streams %+v; unarchive %+v", got.ArchiveMessageStream, got.GetMessageStreams, got.UnarchiveMessageStream)
	}

	stack.WaitFor(t, "four messages at the peer", func() bool { return peer.Received() == 4 })
	var sent *smtptest.Message
	for _, m := range peer.Messages() {
		if bytes.Contains(m.Data, []byte(got.SendEmail.MessageID)) {
			sent = &m
		}
	}
	if sent == nil {
		t.Fatal("the message of sendEmail did not arrive")
	}
	e, err := gomessage.Read(bytes.NewReader(sent.Data))
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	e.Walk(func(path []int, part *gomessage.Entity, err error) error {
		mt, _, _ := part.Header.ContentType()
		if !strings.HasPrefix(mt, "multipart/") {
			_, params, _ := part.Header.ContentDisposition()
			body, _ := io.ReadAll(part.Body)
			mt += " " + params["filename"] + " " + strconv.Itoa(len(body))
		}
		parts = append(parts, strings.TrimSpace(mt))
		return nil
	})
	want := "multipart/mixed|multipart/related|multipart/alternative|text/plain  35|text/html  58|image/png logo.png 16|text/plain notes.txt 11"
	if strings.Join(parts, "|") != want {
		t.Errorf("parts %q\nwant  %q", strings.Join(parts, "|"), want)
	}
	if !strings.Contains(string(sent.Data), "DKIM-Signature:") {
		t.Error("the message is not signed")
	}
	p.stop(t)
}
