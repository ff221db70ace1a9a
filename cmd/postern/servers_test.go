package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/api"
	"github.com/postern/postern/api/client"
)

// serveAPI starts postern serve with its API on a free port and returns
// it, its SMTP address, its API's URL and the installation.
func serveWithAPI(t *testing.T, dir string) (p *proc, smtpAddr, apiURL string, inst installation) {
	t.Helper()
	p = startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0")
	smtpAddr = p.listening(t, "smtp")
	apiURL = "http://" + p.listening(t, "api")
	return p, smtpAddr, apiURL, p.summary(t)
}

// cli returns a function that runs postern in dir with env and returns
// its output, failing the test unless it exits with 0.
func cli(t *testing.T, dir string, env []string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		stdout, stderr, code := runPostern(t, dir, env, args...)
		if code != 0 {
			t.Fatalf("postern %q: status %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
		return stdout
	}
}

// authRefused reports whether SMTP AUTH with token is refused with 535.
func authRefused(t *testing.T, addr, token string) bool {
	t.Helper()
	c := dialSMTP(t, addr)
	defer c.conn.Close()
	c.expect("250", "EHLO client.test")
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + token + "\x00" + token))
	return strings.HasPrefix(c.expect("", "AUTH PLAIN %s", ir), "535 ")
}

func TestServerCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, smtpAddr, apiURL, inst := serveWithAPI(t, dir)
	env := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}
	run := cli(t, dir, env)
	fail := func(want string, extraEnv []string, args ...string) {
		t.Helper()
		_, stderr, code := runPostern(t, dir, append(append([]string{}, env...), extraEnv...), args...)
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("postern %q: status %d, stderr %q; want 1 and %q", args, code, stderr, want)
		}
	}

	out := run("server", "list")
	if !regexp.MustCompile(`(?m)^ID\s+NAME\s+DELIVERY\s+COLOR\s+SMTP\s+PINNED\s+TOKENS$`).MatchString(out) ||
		!regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+Default\s+Sandbox\s+Purple\s+on\s+no\s+1$`, inst.ServerID)).MatchString(out) {
		t.Fatalf("server list:\n%s", out)
	}

	// create: for people, then for scripts.
	out = run("server", "create", "acme-staging", "-sandbox", "-color", "green")
	m := regexp.MustCompile(`Server "acme-staging" created \(ID (\d+), Sandbox\)\.\n\n  Server token: (\S+)\n`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "shown only now") {
		t.Fatalf("server create:\n%s", out)
	}
	staging, stagingToken := m[1], m[2]
	var prod api.Server
	if err := json.Unmarshal([]byte(run("server", "create", "-json", "acme-production")), &prod); err != nil {
		t.Fatal(err)
	}
	if prod.Name != "acme-production" || prod.DeliveryType != "Live" || len(prod.ApiTokens) != 1 || len(prod.ApiTokens[0]) != 36 {
		t.Fatalf("server create -json: %+v", prod)
	}
	fail("already exists", nil, "server", "create", "ACME-staging")
	fail("Color", nil, "server", "create", "x", "-color", "pink")

	// The new server sends with its token; messages shows its mail.
	id := send(t, smtpAddr, stagingToken, "alice@example.net", "from the new server")
	out = run("messages", "-token", stagingToken)
	if !strings.Contains(out, id) || !strings.Contains(out, "from the new server") || !strings.Contains(out, "of 1 messages") {
		t.Fatalf("messages:\n%s", out)
	}
	var msgs struct {
		TotalCount int
		Messages   []struct{ MessageID string }
	}
	if err := json.Unmarshal([]byte(run("messages", "-json", "-count", "5", "-token", stagingToken)), &msgs); err != nil {
		t.Fatal(err)
	}
	if msgs.TotalCount != 1 || len(msgs.Messages) != 1 || msgs.Messages[0].MessageID != id {
		t.Fatalf("messages -json: %+v", msgs)
	}
	// The Default server's mail is not the new server's.
	if out := run("messages", "-token", inst.ServerToken); strings.Contains(out, id) {
		t.Fatalf("the Default server shows the new server's message:\n%s", out)
	}
	fail("(HTTP 401, ErrorCode 10)", nil, "messages") // an account token is not a server token
	fail("-count must be from 1 to 500", nil, "messages", "-count", "0", "-token", stagingToken)

	// edit and show.
	out = run("server", "edit", staging, "-name", "acme-stg", "-pinned")
	if !regexp.MustCompile(`(?m)^Name:\s+acme-stg$`).MatchString(out) || !regexp.MustCompile(`(?m)^Pinned:\s+true$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^Color:\s+Green$`).MatchString(out) {
		t.Fatalf("server edit:\n%s", out)
	}
	if out := run("server", "show", staging); !regexp.MustCompile(`(?m)^ServerLink:\s+` + regexp.QuoteMeta(apiURL) + `/servers/` + staging + `$`).MatchString(out) {
		t.Fatalf("server show (the ServerLink is derived from the API's address):\n%s", out)
	}
	var list api.ServerList
	if err := json.Unmarshal([]byte(run("server", "list", "-json")), &list); err != nil {
		t.Fatal(err)
	}
	if list.TotalCount != 3 || list.Servers[0].Name != "acme-stg" || list.Servers[1].Name != "acme-production" || list.Servers[2].Name != "Default" {
		t.Fatalf("server list -json: %+v", list)
	}
	if out := run("server", "list", "-name", "ACME"); strings.Contains(out, "Default") || !strings.Contains(out, "acme-stg") {
		t.Fatalf("server list -name ACME:\n%s", out)
	}
	fail("nothing to change", nil, "server", "edit", staging)
	fail("already exists in this account", nil, "server", "edit", staging, "-smtp=false", "-name", "Default")

	// Tokens: add, list, revoke.
	var added api.NewTokenInfo
	if err := json.Unmarshal([]byte(run("server", "token-add", staging, "-json")), &added); err != nil {
		t.Fatal(err)
	}
	out = run("server", "tokens", staging)
	if !strings.Contains(out, stagingToken[:8]) || !strings.Contains(out, added.Prefix) || strings.Contains(out, added.Token) {
		t.Fatalf("server tokens:\n%s", out)
	}
	if out := run("server", "token-revoke", staging, stagingToken[:8]); !strings.Contains(out, "revoked") {
		t.Fatalf("server token-revoke:\n%s", out)
	}
	if !authRefused(t, smtpAddr, stagingToken) {
		t.Fatal("the revoked token still authenticates")
	}
	send(t, smtpAddr, added.Token, "bob@example.net", "with the added token")

	// delete.
	if out := run("server", "delete", staging); out != "Server acme-stg removed.\n" {
		t.Fatalf("server delete: %q", out)
	}
	if !authRefused(t, smtpAddr, added.Token) {
		t.Fatal("the deleted server's token still authenticates")
	}
	fail("Server was not found", nil, "server", "show", staging)

	// Errors before any request.
	fail("a token is needed", []string{"POSTERN_TOKEN="}, "server", "list")
	fail(`"abc" is not a server ID`, nil, "server", "show", "abc")
	fail("1 argument(s) expected", nil, "server", "delete")
	fail(`unknown command "frob"`, nil, "server", "frob")
	fail("(HTTP 401, ErrorCode 10)", nil, "server", "list", "-token", "wrong")
	fail(`the API URL "ftp://x" is not an http:// or https:// URL`, nil, "server", "list", "-url", "ftp://x")

	p.stop(t)
	// The store is consistent after all that.
	openCheckedStore(t, dir+"/postern-data")
}

// With api-tls the API serves HTTPS with the SMTP certificate (here the
// self-signed one), and ServerLink says https.
func TestServeAPITLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0", "-api-tls")
	addr := p.listening(t, "api")
	inst := p.summary(t)
	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/server", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Postmark-Server-Token", inst.ServerToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var srv api.Server
	err = json.NewDecoder(resp.Body).Decode(&srv)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil || srv.ServerLink != fmt.Sprintf("https://%s/servers/%d", addr, inst.ServerID) {
		t.Fatalf("GET /server over TLS: %d, %v, %+v", resp.StatusCode, err, srv)
	}
	// Plain HTTP is not served.
	if resp, err := client.Get("http://" + addr + "/server"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to the TLS listener: %d", resp.StatusCode)
		}
	}
	p.stop(t)
}

// cannedAPI serves answers, each the body of a 200 answer to one request
// "METHOD /path?query", byte for byte, so that a test can pin what a
// command prints of a known answer. Any other request fails the test.
func cannedAPI(t *testing.T, answers map[string]string) string {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := answers[r.Method+" "+r.URL.RequestURI()]
		if !ok {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.RequestURI())
			http.Error(w, `{"ErrorCode":404,"Message":"not canned"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, body)
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// outputCase is a command and exactly what it prints: on stdout, and on
// stderr, where nothing means it succeeds and anything that it fails.
type outputCase struct {
	args           []string
	stdout, stderr string
}

// checkOutputs runs each case's command with env and compares what it
// prints with the case's, byte for byte.
func checkOutputs(t *testing.T, env []string, cases []outputCase) {
	t.Helper()
	for _, tc := range cases {
		wantCode := 0
		if tc.stderr != "" {
			wantCode = 1
		}
		stdout, stderr, code := runExactly(t, env, tc.args...)
		if code != wantCode || stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("postern %q: status %d, printed\n%q\n%q\nwant %d,\n%q\n%q", tc.args, code, stdout, stderr, wantCode, tc.stdout, tc.stderr)
		}
	}
}

// runExactly runs postern and returns what it printed byte for byte:
// runPostern's output, kept line by line, ends an unfinished last line.
func runExactly(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, postern.Path, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = testEnv(env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var exit *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &exit) {
		t.Fatalf("postern %q: %v", args, err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// The server and messages commands print, byte for byte, the API's JSON
// as received with -json and otherwise these tables and lines.
func TestServerCommandOutputs(t *testing.T) {
	t.Parallel()
	// The answers as a server might format them: -json must not change a byte.
	server := "{\n  \"ID\": 7, \"Name\": \"acme-staging\", \"ApiTokens\": [\"0f3c9a2e-5b1d-4c8e-9a7f-2d6b4e8c1a93\", \"77aa01bc-0000-4000-8000-123456789abc\"],\n" +
		"  \"ServerLink\": \"http://127.0.0.1:8080/servers/7\", \"Color\": \"Green\", \"SmtpApiActivated\": true, \"DeliveryType\": \"Sandbox\",\n" +
		"  \"InboundAddress\": \"7f@inbound.example\", \"TrackOpens\": true, \"TrackLinks\": \"HtmlOnly\", \"BounceHookUrl\": \"https://hooks.example/bounce\",\n" +
		"  \"DeliveryHookUrl\": \"\", \"Pinned\": true, \"RateLimitPerMinute\": 0, \"DailyQuota\": 1000, \"RetentionDays\": 30}"
	edited := strings.Replace(strings.Replace(server, "acme-staging", "acme-stg", 1), `"RateLimitPerMinute": 0`, `"RateLimitPerMinute": 60`, 1)
	list := `{"TotalCount":2,"Servers":[` + server + `,{"ID":1,"Name":"Default","ApiTokens":["3c1d"],"Color":"Purple","DeliveryType":"Live","RetentionDays":45}]}`
	tokens := "{\"TotalCount\": 2, \"Tokens\": [{\"Prefix\": \"0f3c9a2e\", \"CreatedAt\": \"2024-05-01T10:20:30+02:00\"},\n {\"Prefix\": \"77aa01bc\", \"Role\": \"server\", \"CreatedAt\": \"2024-06-11T00:00:00Z\"}]}\n"
	newToken := `{"Token": "77aa01bc-0000-4000-8000-123456789abc", "Prefix": "77aa01bc", "ServerID": 7, "CreatedAt": "2024-06-11T00:00:00Z"}`
	messages := `{"TotalCount": 12, "Messages": [` +
		`{"MessageID": "5e2a0c44-1b7e-4d2c-9c1a-0a9f3b2c7d10", "ReceivedAt": "2024-06-11T09:08:07.654+02:00", "Status": "Sent", "From": "Acme Billing <billing@acme.example>",` +
		` "Recipients": ["alice@example.net", "bob@example.net", "carol.with.a.long.name@example.org"], "Subject": "Your invoice\tfor June,\n ready to download as a PDF from the portal", "Tag": "invoice"},` +
		`{"MessageID": "a1", "ReceivedAt": "2024-06-10T23:59:59Z", "Status": "Queued", "From": "x@acme.example", "Recipients": ["z@example.com"], "Subject": ""}]}`
	url := cannedAPI(t, map[string]string{
		"GET /servers?count=500&offset=0":          list,
		"POST /servers":                            server,
		"GET /servers/7":                           server,
		"PUT /servers/7":                           edited,
		"DELETE /servers/7":                        `{"ErrorCode": 0, "Message": "Server acme-stg removed."}`,
		"GET /servers/7/tokens":                    tokens,
		"POST /servers/7/tokens":                   newToken,
		"DELETE /servers/7/tokens/0f3c":            `{"ErrorCode":0,"Message":"Token 0f3c9a2e revoked."}` + "\n",
		"GET /messages/outbound?count=20&offset=0": messages,
		"GET /messages/outbound?count=5&offset=0":  `{"TotalCount": 0, "Messages": []}`,
	})
	// What server show prints of the server, and edit of the edited one.
	shown := "" +
		"ID:                  7\n" +
		"Name:                acme-staging\n" +
		"DeliveryType:        Sandbox\n" +
		"Color:               Green\n" +
		"SmtpApiActivated:    true\n" +
		"Pinned:              true\n" +
		"ApiTokens:           0f3c9a2e-5b1d-4c8e-9a7f-2d6b4e8c1a93, 77aa01bc-0000-4000-8000-123456789abc\n" +
		"ServerLink:          http://127.0.0.1:8080/servers/7\n" +
		"TrackOpens:          true\n" +
		"TrackLinks:          HtmlOnly\n" +
		"BounceHookUrl:       https://hooks.example/bounce\n" +
		"DeliveryHookUrl:     \n" +
		"InboundAddress:      7f@inbound.example\n" +
		"RateLimitPerMinute:  0 (no limit)\n" +
		"DailyQuota:          1000\n" +
		"RetentionDays:       30\n"
	env := []string{"POSTERN_URL=" + url, "POSTERN_TOKEN=account-token"}
	checkOutputs(t, env, []outputCase{
		{[]string{"server", "list"}, "" +
			"ID  NAME          DELIVERY  COLOR   SMTP  PINNED  TOKENS\n" +
			"7   acme-staging  Sandbox   Green   on    yes     2\n" +
			"1   Default       Live      Purple  off   no      1\n", ""},
		{[]string{"server", "list", "-json"}, `{"TotalCount":2,"Servers":[` +
			`{"ID":7,"Name":"acme-staging","ApiTokens":["0f3c9a2e-5b1d-4c8e-9a7f-2d6b4e8c1a93","77aa01bc-0000-4000-8000-123456789abc"],"ServerLink":"http://127.0.0.1:8080/servers/7",` +
			`"Color":"Green","SmtpApiActivated":true,"RawEmailEnabled":false,"DeliveryType":"Sandbox","InboundAddress":"7f@inbound.example","InboundHash":"","InboundDomain":"",` +
			`"InboundSpamThreshold":0,"InboundHookUrl":"","BounceHookUrl":"https://hooks.example/bounce","OpenHookUrl":"","DeliveryHookUrl":"","ClickHookUrl":"",` +
			`"PostFirstOpenOnly":false,"TrackOpens":true,"TrackLinks":"HtmlOnly","IncludeBounceContentInHook":false,"EnableSmtpApiErrorHooks":false,"Pinned":true,` +
			`"RateLimitPerMinute":0,"DailyQuota":1000,"RetentionDays":30},` +
			`{"ID":1,"Name":"Default","ApiTokens":["3c1d"],"ServerLink":"","Color":"Purple","SmtpApiActivated":false,"RawEmailEnabled":false,"DeliveryType":"Live",` +
			`"InboundAddress":"","InboundHash":"","InboundDomain":"","InboundSpamThreshold":0,"InboundHookUrl":"","BounceHookUrl":"","OpenHookUrl":"","DeliveryHookUrl":"",` +
			`"ClickHookUrl":"","PostFirstOpenOnly":false,"TrackOpens":false,"TrackLinks":"","IncludeBounceContentInHook":false,"EnableSmtpApiErrorHooks":false,"Pinned":false,` +
			`"RateLimitPerMinute":0,"DailyQuota":0,"RetentionDays":45}]}` + "\n", ""},
		{[]string{"server", "create", "acme-staging", "-sandbox"}, "" +
			"Server \"acme-staging\" created (ID 7, Sandbox).\n" +
			"\n" +
			"  Server token: 0f3c9a2e-5b1d-4c8e-9a7f-2d6b4e8c1a93, 77aa01bc-0000-4000-8000-123456789abc\n" +
			"\n" +
			"The token is shown only now; Postern keeps only its hash. It is the server's\n" +
			"SMTP username and password, and its X-Postmark-Server-Token.\n", ""},
		{[]string{"server", "create", "acme-staging", "-json"}, server, ""},
		{[]string{"server", "show", "7"}, shown, ""},
		{[]string{"server", "show", "7", "-json"}, server, ""},
		{[]string{"server", "edit", "7", "-name", "acme-stg"}, strings.NewReplacer("acme-staging", "acme-stg", "0 (no limit)", "60").Replace(shown), ""},
		{[]string{"server", "edit", "7", "-rate-limit", "60", "-json"}, edited, ""},
		{[]string{"server", "delete", "7"}, "Server acme-stg removed.\n", ""},
		{[]string{"server", "delete", "7", "-json"}, `{"ErrorCode": 0, "Message": "Server acme-stg removed."}`, ""},
		{[]string{"server", "tokens", "7"}, "" +
			"PREFIX    CREATED\n" +
			"0f3c9a2e  2024-05-01T08:20:30Z\n" +
			"77aa01bc  2024-06-11T00:00:00Z\n", ""},
		{[]string{"server", "tokens", "7", "-json"}, tokens, ""},
		{[]string{"server", "token-add", "7"}, "" +
			"New token for server 7: 77aa01bc-0000-4000-8000-123456789abc\n" +
			"(shown only now; revoke it with: postern server token-revoke 7 77aa01bc)\n", ""},
		{[]string{"server", "token-add", "7", "-json"}, newToken, ""},
		{[]string{"server", "token-revoke", "7", "0f3c"}, "Token 0f3c9a2e revoked.\n", ""},
		{[]string{"server", "token-revoke", "7", "0f3c", "-json"}, `{"ErrorCode":0,"Message":"Token 0f3c9a2e revoked."}` + "\n", ""},
		{[]string{"messages"}, "" +
			"RECEIVED              MESSAGE ID                            STATUS  FROM                                 TO                                        SUBJECT\n" +
			"2024-06-11T07:08:07Z  5e2a0c44-1b7e-4d2c-9c1a-0a9f3b2c7d10  Sent    Acme Billing <billing@acme.example>  alice@example.net, bob@example.net, car…  Your invoice for June, ready to download as a PDF…\n" +
			"2024-06-10T23:59:59Z  a1                                    Queued  x@acme.example                       z@example.com                             \n" +
			"2 of 12 messages\n", ""},
		{[]string{"messages", "-json"}, messages, ""},
		{[]string{"messages", "-count", "5"}, "RECEIVED  MESSAGE ID  STATUS  FROM  TO  SUBJECT\n0 of 0 messages\n", ""},
	})
}

func TestServerTransferCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, smtpAddr, apiURL, inst := serveWithAPI(t, dir)
	env := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}
	run := cli(t, dir, env)
	c, err := client.New(apiURL, client.AccountToken, inst.AccountToken)
	if err != nil {
		t.Fatal(err)
	}
	var acct api.NewAccount
	if _, err := c.Do(http.MethodPost, "/accounts", map[string]any{"Name": "Customer"}, &acct); err != nil {
		t.Fatal(err)
	}
	var accounts api.AccountList
	if _, err := c.Do(http.MethodGet, "/accounts", nil, &accounts); err != nil || len(accounts.Accounts) != 2 || !accounts.Accounts[0].Operator {
		t.Fatalf("accounts %+v %v", accounts, err)
	}
	operator := accounts.Accounts[0].ID
	var srv api.Server
	if err := json.Unmarshal([]byte(run("server", "create", "-json", "-sandbox", "moving")), &srv); err != nil {
		t.Fatal(err)
	}
	id := send(t, smtpAddr, srv.ApiTokens[0], "alice@example.net", "before the move")

	out := run("server", "transfer", "-server", fmt.Sprint(srv.ID), "-to", fmt.Sprint(acct.ID))
	if !strings.Contains(out, fmt.Sprintf("Server \"moving\" (ID %d) moved to account %d.", srv.ID, acct.ID)) {
		t.Fatalf("server transfer:\n%s", out)
	}
	// The customer's owner token sees it; its token still reads its mail.
	custEnv := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + acct.AccountToken}
	if out, _, code := runPostern(t, dir, custEnv, "server", "list"); code != 0 || !strings.Contains(out, "moving") {
		t.Fatalf("the customer's servers (%d):\n%s", code, out)
	}
	if out := run("messages", "-token", srv.ApiTokens[0]); !strings.Contains(out, id) {
		t.Fatalf("messages after the move:\n%s", out)
	}
	// Back, for scripts; the customer's token may not.
	if _, stderr, code := runPostern(t, dir, custEnv, "server", "transfer", "-server", fmt.Sprint(srv.ID), "-to", fmt.Sprint(operator)); code != 1 || !strings.Contains(stderr, "HTTP 404") {
		t.Fatalf("a customer's transfer: %d %s", code, stderr)
	}
	var back api.TransferAnswer
	if err := json.Unmarshal([]byte(run("server", "transfer", "-json", "-server", fmt.Sprint(srv.ID), "-to", fmt.Sprint(operator))), &back); err != nil {
		t.Fatal(err)
	}
	if back.Server.ID != srv.ID || back.Server.Name != "moving" || back.CopiedDomains == nil {
		t.Fatalf("server transfer -json: %+v", back)
	}
	if _, stderr, code := runPostern(t, dir, env, "server", "transfer", "-server", fmt.Sprint(srv.ID)); code != 1 || !strings.Contains(stderr, "-to ACCOUNT") {
		t.Fatalf("without -to: %d %s", code, stderr)
	}
}
