package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/api"
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
	run := func(args ...string) string {
		t.Helper()
		stdout, stderr, code := runPostern(t, dir, env, args...)
		if code != 0 {
			t.Fatalf("postern %q: status %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout, stderr)
		}
		return stdout
	}
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
