package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
)

// TestTokensDoNotLeak runs postern serve with debug logging in JSON and
// metrics on, uses every token it makes (good, wrong, of the wrong kind,
// revoked) over SMTP and on every area of the HTTP API, and then looks
// for each token, whole and past its 8-character prefix, in everything
// that came back: the log, stdout after the first-run summary, every HTTP
// response (headers and body), /metrics, /readyz and /healthz. A token
// may appear only where it is created: the first-run summary, and the
// responses of POST /servers, POST /servers/{id}/tokens, POST /accounts
// and POST /account/tokens that make it. No AUTH exchange (the base64 of
// "\x00token\x00token", or of the token alone as AUTH LOGIN sends it)
// may appear in the log either.
func TestTokensDoNotLeak(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	dns := dnstest.New(t)
	dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	dns.SetA("mx.dest.example", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}})
	p := startPostern(t, dir, []string{
		"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_RETRY_BASE=100ms",
	}, "serve", "-smtp-addr", "127.0.0.1:0", "-log-level", "debug", "-log-format", "json")
	listeningJSON := func(name string) string {
		re := regexp.MustCompile(`"msg":"listening","listener":"` + name + `","addr":"([^"]+)"`)
		return p.stderr.waitFor(t, re, "postern serve")[1]
	}
	smtpAddr := listeningJSON("smtp")
	apiURL := "http://" + listeningJSON("api")
	metricsURL := "http://" + listeningJSON("metrics")
	inst := p.summary(t)
	firstRun := p.stdout.String() // the summary: the tokens' one showing

	// tokens: every token of the test, by name. allowed: the one response
	// (by index in responses) that may show each.
	tokens := map[string]string{
		"owner token (first run)":  inst.AccountToken,
		"server token (first run)": inst.ServerToken,
		"unknown token":            auth.NewToken(),
	}
	type response struct {
		what    string
		text    string // status, headers and body
		creates string // the token this response made, if any
	}
	var responses []response
	client := &http.Client{Timeout: waitTimeout}

	// call makes one API request with the token in header (if any) and
	// returns the status and body; creates names the token that the
	// response is expected to show, which the caller reads from it.
	call := func(method, url, header, token, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/json")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if header != "" {
			req.Header.Set(header, token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		fmt.Fprintf(&text, "%s\n", resp.Status)
		resp.Header.Write(&text)
		text.Write(data)
		responses = append(responses, response{what: method + " " + strings.TrimPrefix(url, apiURL), text: text.String()})
		return resp.StatusCode, data
	}
	const acctHdr, srvHdr = "X-Postmark-Account-Token", "X-Postmark-Server-Token"
	mustJSON := func(status int, data []byte, v any, what string) {
		t.Helper()
		if status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", what, status, data)
		}
		if err := json.Unmarshal(data, v); err != nil {
			t.Fatalf("%s: %v: %s", what, err, data)
		}
	}

	// Tokens made over the API, each shown once in its response.
	var live struct {
		ID        int64
		ApiTokens []string
	}
	st, data := call("POST", apiURL+"/servers", acctHdr, inst.AccountToken, `{"Name":"leak-live","DeliveryType":"Live"}`)
	mustJSON(st, data, &live, "POST /servers")
	if len(live.ApiTokens) != 1 {
		t.Fatalf("POST /servers: tokens %q", live.ApiTokens)
	}
	responses[len(responses)-1].creates = live.ApiTokens[0]
	tokens["server token (POST /servers)"] = live.ApiTokens[0]
	serverToken := live.ApiTokens[0]
	sid := strconv.FormatInt(live.ID, 10)

	var extra struct{ Token, Prefix string }
	st, data = call("POST", apiURL+"/servers/"+sid+"/tokens", acctHdr, inst.AccountToken, `{}`)
	mustJSON(st, data, &extra, "POST /servers/{id}/tokens")
	responses[len(responses)-1].creates = extra.Token
	tokens["server token (POST /servers/{id}/tokens)"] = extra.Token
	extraServer := extra

	var admin struct{ Token, Prefix string }
	st, data = call("POST", apiURL+"/account/tokens", acctHdr, inst.AccountToken, `{"Role":"admin"}`)
	mustJSON(st, data, &admin, "POST /account/tokens")
	responses[len(responses)-1].creates = admin.Token
	tokens["account token (POST /account/tokens)"] = admin.Token

	var other struct {
		ID           int64
		AccountToken string
	}
	st, data = call("POST", apiURL+"/accounts", acctHdr, inst.AccountToken, `{"Name":"Other"}`)
	mustJSON(st, data, &other, "POST /accounts")
	responses[len(responses)-1].creates = other.AccountToken
	tokens["owner token (POST /accounts)"] = other.AccountToken

	// SMTP: successes with both server tokens (PLAIN and LOGIN), and
	// failures with an unknown token and with an account token.
	var authExchanges []string
	plain := func(tok string) string {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + tok + "\x00" + tok))
		authExchanges = append(authExchanges, ir)
		return ir
	}
	var ids []string
	for _, rcpt := range []string{"ok@dest.example", "gone@dest.example"} {
		c := dialSMTP(t, smtpAddr)
		c.expect("250", "EHLO client.test")
		c.expect("235 2.7.0", "AUTH PLAIN %s", plain(serverToken))
		c.expect("250", "MAIL FROM:<app@example.com>")
		c.expect("250", "RCPT TO:<%s>", rcpt)
		ids = append(ids, c.data(message(rcpt, "leak "+rcpt)))
		c.quit()
	}
	ids = append(ids, send(t, smtpAddr, inst.ServerToken, "sandbox@dest.example", "sandbox"))
	plain(inst.ServerToken)
	{
		c := dialSMTP(t, smtpAddr)
		c.expect("250", "EHLO client.test")
		user := base64.StdEncoding.EncodeToString([]byte(extraServer.Token))
		authExchanges = append(authExchanges, user)
		c.expect("334", "AUTH LOGIN")
		c.expect("334", "%s", user)
		c.expect("235 2.7.0", "%s", user)
		c.quit()
	}
	for _, tok := range []string{tokens["unknown token"], inst.AccountToken, admin.Token} {
		c := dialSMTP(t, smtpAddr)
		c.expect("250", "EHLO client.test")
		c.expect("535 5.7.8", "AUTH PLAIN %s", plain(tok))
		c.quit()
	}

	// Wait for the Live messages' events, and find the bounce.
	waitAPI := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s\n%s", what, waitTimeout, p.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var bounceID int64
	waitAPI("the bounce", func() bool {
		var list struct {
			Bounces []struct{ ID int64 }
		}
		st, data := call("GET", apiURL+"/bounces?count=10&offset=0", srvHdr, serverToken, "")
		mustJSON(st, data, &list, "GET /bounces")
		if len(list.Bounces) == 0 {
			return false
		}
		bounceID = list.Bounces[0].ID
		return true
	})
	waitAPI("the delivery", func() bool {
		_, data := call("GET", apiURL+"/messages/outbound/"+ids[0]+"/details", srvHdr, serverToken, "")
		return strings.Contains(string(data), `"Delivered"`)
	})
	bid := strconv.FormatInt(bounceID, 10)

	// Every area with the right token, a wrong one, and one of the
	// wrong kind.
	type endpoint struct {
		method, path, body string
		account            bool // account token; else server token
	}
	endpoints := []endpoint{
		{"GET", "/servers", "", true},
		{"GET", "/servers/" + sid, "", true},
		{"PUT", "/servers/" + sid, `{"Color":"Red"}`, true},
		{"GET", "/servers/" + sid + "/tokens", "", true},
		{"POST", "/servers/" + sid + "/tokens", `{}`, true},
		{"GET", "/domains", "", true},
		{"POST", "/domains", `{"Name":"leak.example"}`, true},
		{"GET", "/accounts", "", true},
		{"GET", "/account/tokens", "", true},
		{"POST", "/account/tokens", `{"Role":"admin"}`, true},
		{"POST", "/accounts", `{"Name":"Third"}`, true},
		{"GET", "/server", "", false},
		{"PUT", "/server", `{"Color":"Blue"}`, false},
		{"GET", "/messages/outbound?count=10&offset=0", "", false},
		{"GET", "/messages/outbound/" + ids[0] + "/details", "", false},
		{"GET", "/messages/outbound/" + ids[0] + "/dump", "", false},
		{"GET", "/bounces?count=10&offset=0", "", false},
		{"GET", "/bounces/" + bid, "", false},
		{"GET", "/bounces/" + bid + "/dump", "", false},
		{"GET", "/deliverystats", "", false},
		{"GET", "/stats/outbound", "", false},
		{"DELETE", "/servers/" + sid + "/tokens/nosuchpr", "", true},
		{"DELETE", "/account/tokens/nosuchpr", "", true},
	}
	for _, ep := range endpoints {
		hdr, good, wrongKind := srvHdr, serverToken, inst.AccountToken
		if ep.account {
			hdr, good, wrongKind = acctHdr, inst.AccountToken, serverToken
		}
		for _, tok := range []string{tokens["unknown token"], wrongKind} {
			if st, data := call(ep.method, apiURL+ep.path, hdr, tok, ep.body); st != http.StatusUnauthorized {
				t.Errorf("%s %s with a bad token: %d %s", ep.method, ep.path, st, data)
			}
		}
		// The wrong kind in its own header, too.
		otherHdr := acctHdr
		if ep.account {
			otherHdr = srvHdr
		}
		call(ep.method, apiURL+ep.path, otherHdr, wrongKind, ep.body)
		st, data := call(ep.method, apiURL+ep.path, hdr, good, ep.body)
		if st >= 500 {
			t.Errorf("%s %s: %d %s", ep.method, ep.path, st, data)
		}
		if ep.method == "POST" && strings.Contains(ep.path, "tokens") || ep.path == "/accounts" && ep.method == "POST" {
			// A token made here: shown in this response only.
			var made struct{ Token, AccountToken string }
			json.Unmarshal(data, &made)
			tok := made.Token + made.AccountToken
			if tok == "" {
				t.Fatalf("%s %s made no token: %s", ep.method, ep.path, data)
			}
			responses[len(responses)-1].creates = tok
			tokens["token made by "+ep.method+" "+ep.path] = tok
		}
	}

	// Revoke the extra tokens and use them again.
	if st, data := call("DELETE", apiURL+"/servers/"+sid+"/tokens/"+extraServer.Prefix, acctHdr, inst.AccountToken, ""); st != http.StatusOK {
		t.Errorf("revoke the server token: %d %s", st, data)
	}
	if st, data := call("DELETE", apiURL+"/account/tokens/"+admin.Prefix, acctHdr, inst.AccountToken, ""); st != http.StatusOK {
		t.Errorf("revoke the account token: %d %s", st, data)
	}
	if st, _ := call("GET", apiURL+"/server", srvHdr, extraServer.Token, ""); st != http.StatusUnauthorized {
		t.Errorf("a revoked server token: %d", st)
	}
	if st, _ := call("GET", apiURL+"/servers", acctHdr, admin.Token, ""); st != http.StatusUnauthorized {
		t.Errorf("a revoked account token: %d", st)
	}
	{
		c := dialSMTP(t, smtpAddr)
		c.expect("250", "EHLO client.test")
		c.expect("535 5.7.8", "AUTH PLAIN %s", plain(extraServer.Token))
		c.quit()
	}

	// The operations listener.
	for _, path := range []string{"/metrics", "/readyz", "/healthz"} {
		st, data := call("GET", metricsURL+path, "", "", "")
		if st != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, st, data)
		}
	}
	stopJSON(t, p)

	// The searches.
	type place struct{ name, text string }
	places := []place{
		{"the log (stderr)", p.stderr.String()},
		{"stdout after the first-run summary", strings.TrimPrefix(p.stdout.String(), firstRun)},
	}
	if !strings.HasPrefix(p.stdout.String(), firstRun) {
		t.Fatalf("stdout changed under the summary:\n%s", p.stdout)
	}
	names := make([]string, 0, len(tokens))
	for name := range tokens {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tok := tokens[name]
		if len(tok) <= 16 {
			t.Fatalf("%s: %q is too short to be a token", name, tok)
		}
		needles := []string{tok, tok[8:]}
		for _, pl := range places {
			for _, n := range needles {
				if strings.Contains(pl.text, n) {
					t.Errorf("%s (%q) appears in %s:\n%s", name, n, pl.name, linesWith(pl.text, n))
				}
			}
		}
		shown := false
		for _, r := range responses {
			for _, n := range needles {
				if !strings.Contains(r.text, n) {
					continue
				}
				if r.creates == tok {
					shown = true
					continue
				}
				t.Errorf("%s (%q) appears in the response to %s:\n%s", name, n, r.what, r.text)
			}
		}
		if !shown && !strings.Contains(firstRun, tok) && name != "unknown token" {
			t.Errorf("%s was never shown, not even where it was made", name)
		}
	}
	for _, ex := range authExchanges {
		for _, pl := range places {
			if strings.Contains(pl.text, ex) {
				t.Errorf("an AUTH exchange (%q) appears in %s:\n%s", ex, pl.name, linesWith(pl.text, ex))
			}
		}
	}
	// The log was at debug level, and the searches covered something.
	if !strings.Contains(p.stderr.String(), `"level":"DEBUG"`) || len(responses) < 3*len(endpoints) {
		t.Errorf("%d responses; debug lines in the log: %v", len(responses), strings.Contains(p.stderr.String(), `"level":"DEBUG"`))
	}
}

// stopJSON is proc.stop for a serve that logs in JSON: it waits for the
// JSON "postern started" line and for the signal handler, sends SIGTERM
// and wants status 0.
func stopJSON(t *testing.T, p *proc) {
	t.Helper()
	p.stderr.waitFor(t, regexp.MustCompile(`"msg":"postern started"`), "postern serve")
	deadline := time.Now().Add(waitTimeout)
	for p.probeSignals {
		if caught, _ := catchesSignal(p.cmd.Process.Pid, syscall.SIGINT); caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postern serve installed no handler for SIGINT within %s", waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("postern exited with %d%s after SIGTERM, want 0\nstderr:\n%s", code, p.diedOfSignal(), p.stderr)
	}
}

// linesWith returns the lines of text that contain s.
func linesWith(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
