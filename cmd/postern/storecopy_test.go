package main

import (
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api/client"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// A bbolt store that holds messages, events, bounces, suppressions,
// stats and a domain is copied onto PostgreSQL with postern store copy;
// served from there, the API gives the same answers for the messages,
// their details and dumps, the bounces, the stats and the domains. And
// the copy goes back onto bbolt, counted the same.
func TestStoreCopyBoltToPostgresAndBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inst, data := initialized(t, dir)
	st, err := bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token := auth.NewToken()
	live, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "copied", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now())
	if err != nil {
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
	dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	dns.SetA("mx.dest.example", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone-") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}})
	env := []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=registered"}
	p := startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	addr := p.listening(t, "smtp")
	for i := range 12 {
		rcpt := fmt.Sprintf("ok-%d@dest.example", i)
		if i%4 == 3 {
			rcpt = fmt.Sprintf("gone-%d@dest.example", i)
		}
		c, err := stack.DialAuth(addr, token)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stack.Submit(c, "app@example.com", []string{rcpt}, fmt.Sprintf(
			"From: App <app@example.com>\nTo: %s\nSubject: copy %d\nX-PM-Tag: tag-%d\nX-PM-Metadata-n: %d\n\nBody %d.\n", rcpt, i, i%3, i, i)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	api := "http://" + p.listening(t, "api")
	stack.WaitFor(t, "every message delivered or bounced", func() bool {
		return strings.Count(get(t, api, "/messages/outbound?count=50&offset=0&status=queued", token), "MessageID") == 0 &&
			strings.Contains(get(t, api, "/messages/outbound?count=50&offset=0", token), `"TotalCount":12`)
	})
	before := answers(t, api, token, inst.AccountToken)
	p.stop(t)
	if len(before) != 2*12+7 || !strings.Contains(before["/bounces?count=50&offset=0"], `"TotalCount":3`) ||
		!strings.Contains(before["/domains"], `"example.com"`) {
		t.Fatalf("the bbolt store does not hold what the test needs: %d answers, bounces %s", len(before), before["/bounces?count=50&offset=0"])
	}

	dsn := pgtest.New(t)
	out, errOut, code := runPostern(t, dir, nil, "store", "copy", "-from", data, "-to", dsn)
	if code != 0 {
		t.Fatalf("store copy: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"messages        12", "bounces         3", "suppressions    3", "domains         1"} {
		if !strings.Contains(out, want) {
			t.Errorf("store copy printed no %q:\n%s", want, out)
		}
	}
	if _, errOut, code := runPostern(t, dir, nil, "store", "copy", "-from", data, "-to", dsn); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Errorf("a second copy into the same database: exit %d\n%s", code, errOut)
	}

	pgDir := t.TempDir()
	p = startPostern(t, pgDir, append(env, "POSTERN_STORE="+dsn), "serve", "-smtp-addr", "127.0.0.1:0")
	p.listening(t, "smtp")
	pgAPI := "http://" + p.listening(t, "api")
	after := answers(t, pgAPI, token, inst.AccountToken)
	p.stop(t)
	for path, want := range before {
		if got := strings.ReplaceAll(after[path], pgAPI, api); got != want {
			t.Errorf("%s differs on PostgreSQL:\n got %s\nwant %s", path, got, want)
		}
	}

	back := filepath.Join(t.TempDir(), "back")
	out2, errOut, code := runPostern(t, dir, nil, "store", "copy", "-from", dsn, "-to", back)
	if code != 0 {
		t.Fatalf("store copy back: exit %d\n%s", code, errOut)
	}
	if strings.SplitN(out2, "\n", 2)[1] != strings.SplitN(out, "\n", 2)[1] {
		t.Errorf("the counts of the copy back differ:\n%s\nfrom\n%s", out2, out)
	}
	if got, err := bolt.Open(bolt.Path(back), bolt.Options{}); err != nil {
		t.Fatal(err)
	} else {
		defer got.Close()
		if err := got.Check(); err != nil {
			t.Errorf("the bbolt store copied back: %v", err)
		}
		if res, err := got.SearchMessages(live.ID, store.MessageQuery{}); err != nil || res.Total != 12 {
			t.Errorf("the bbolt store copied back holds %d messages, %v", res.Total, err)
		}
	}
}

// get fetches an API path with a server token, or an account token when
// the path is an account's, through the CLI's client.
func get(t *testing.T, base, path, token string) string {
	t.Helper()
	header := client.ServerToken
	if strings.HasPrefix(path, "/domains") {
		header = client.AccountToken
	}
	c, err := client.New(base, header, token)
	if err != nil {
		t.Fatal(err)
	}
	body, err := c.Call(http.MethodGet, path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return string(body)
}

// answers collects what the API says of the copied server and account.
func answers(t *testing.T, api, token, accountToken string) map[string]string {
	t.Helper()
	out := map[string]string{}
	list := get(t, api, "/messages/outbound?count=50&offset=0", token)
	out["messages"] = list
	for _, part := range strings.Split(list, `"MessageID":"`)[1:] {
		id := part[:strings.IndexByte(part, '"')]
		for _, path := range []string{"/messages/outbound/" + id + "/details", "/messages/outbound/" + id + "/dump"} {
			out[path] = get(t, api, path, token)
		}
	}
	for _, path := range []string{"/bounces?count=50&offset=0", "/deliverystats", "/stats/outbound", "/stats/outbound/bounces", "/messages/outbound?count=50&offset=0&tag=tag-1"} {
		out[path] = get(t, api, path, token)
	}
	out["/domains"] = get(t, api, "/domains?count=50&offset=0", accountToken)
	return out
}
