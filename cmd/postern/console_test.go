package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/postern/postern/internal/testutil"
)

// apiCall sends a JSON request to the API with token and decodes the
// answer into out, failing the test on any status but 200.
func apiCall(t *testing.T, apiURL, token, method, path string, body, out any) {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(method, apiURL+path, &buf)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Postmark-Account-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// browser starts headless Chromium (Debian's chromium) for a test: a
// context for one person, with its own cookies.
func browser(t *testing.T) func() context.Context {
	t.Helper()
	path := testutil.NeedTool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	return func() context.Context {
		ctx, cancel := chromedp.NewContext(alloc)
		t.Cleanup(cancel)
		return ctx
	}
}

// serverRowsJS reads the servers page's rows: ID, colour, pinned, name.
const serverRowsJS = `Array.from(document.querySelectorAll("tr[data-server-id]")).map(r =>
	r.dataset.serverId + "/" + r.dataset.color + "/" + r.dataset.pinned + "/" + r.querySelector(".server-name").textContent)`

// drive runs steps in ctx's tab, failing the test with the page it
// stopped at.
func drive(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Location()); err != nil { // the first run starts the tab
		t.Fatal(err)
	}
	stepCtx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(stepCtx, steps...); err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

// stepTimeout bounds one drive: a page that never shows what a step
// waits for fails the test instead of hanging it.
const stepTimeout = 30 * time.Second

// read runs one action that returns a value.
func read[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// rowsOf reads the servers page's rows.
func rowsOf(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return read(t, ctx, "the servers page's rows", chromedp.Evaluate[[]string](serverRowsJS))
}

// signInLinkRe is the one-time link serve prints after the tokens.
var signInLinkRe = regexp.MustCompile(`(?m)^  https?://\S+/signin/link\?token=\S+$`)

// TestConsoleInChromium drives the real binary's console in headless
// Chromium: the owner's first sign-in from the link serve prints, the
// servers page's order, pinning from the list, a Server Viewer who sees
// only their server, an account switch and a transfer.
func TestConsoleInChromium(t *testing.T) {
	newContext := browser(t)
	dir := t.TempDir()
	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0")
	apiURL := "http://" + p.listening(t, "api")
	consoleURL := "http://" + p.listening(t, "console")
	inst := p.summary(t)
	p.stdout.waitFor(t, signInLinkRe, "the console's sign-in link")
	out := p.stdout.String()
	m := regexp.MustCompile(`The console is at (\S+)\. Sign in as owner@localhost`).FindStringSubmatch(out)
	link := regexp.MustCompile(`(?m)^  (http://\S+/signin/link\?token=\S+)$`).FindStringSubmatch(out)
	if m == nil || link == nil || m[1] != consoleURL {
		t.Fatalf("serve printed no console address (want %s) or sign-in link:\n%s", consoleURL, out)
	}

	// Servers of the operator's account, made over the API.
	type server struct {
		ID     int64
		Name   string
		Color  string
		Pinned bool
	}
	var zeta, alpha, beta server
	apiCall(t, apiURL, inst.AccountToken, "POST", "/servers", map[string]any{"Name": "zeta", "Color": "Red"}, &zeta)
	apiCall(t, apiURL, inst.AccountToken, "PUT", fmt.Sprintf("/servers/%d", zeta.ID), map[string]any{"Pinned": true}, &zeta)
	apiCall(t, apiURL, inst.AccountToken, "POST", "/servers", map[string]any{"Name": "Alpha", "Color": "Green"}, &alpha)
	apiCall(t, apiURL, inst.AccountToken, "POST", "/servers", map[string]any{"Name": "beta", "Color": "Blue"}, &beta)

	// Three messages to the Sandbox server over SMTP, which its row counts.
	smtpAddr := p.listening(t, "smtp")
	for i := range 3 {
		send(t, smtpAddr, inst.ServerToken, fmt.Sprintf("customer%d@example.net", i), "Your receipt")
	}

	// The owner sets a password from the link and lands on the servers
	// page; then signs out and in with the form.
	owner := newContext()
	const ownerPassword = "a long owner passphrase"
	drive(t, owner, "set a password from the link",
		chromedp.Navigate(link[1]),
		chromedp.SendKeys(chromedp.CSS("#password"), ownerPassword),
		chromedp.SendKeys(chromedp.CSS("#password2"), ownerPassword),
		chromedp.Submit(chromedp.CSS("#password2")),
		chromedp.WaitVisible(chromedp.CSS("#servers")),
		chromedp.Click(chromedp.CSS(`form[action="/signout"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.SendKeys(chromedp.CSS("#email"), "owner@localhost"),
		chromedp.SendKeys(chromedp.CSS("#password"), ownerPassword),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#servers")),
	)
	rows := rowsOf(t, owner)
	want := []string{
		fmt.Sprintf("%d/Red/true/zeta", zeta.ID),
		fmt.Sprintf("%d/Green/false/Alpha", alpha.ID),
		fmt.Sprintf("%d/Blue/false/beta", beta.ID),
		fmt.Sprintf("%d/Purple/false/Default", inst.ServerID),
	}
	if strings.Join(rows, " ") != strings.Join(want, " ") {
		t.Fatalf("servers page rows %q, want %q", rows, want)
	}
	if sent := read(t, owner, "Default's sent count", chromedp.Text(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"] td:nth-child(3)`, inst.ServerID)))); sent != "3" {
		t.Errorf("Default's messages in 30 days: %q, want 3", sent)
	}

	// Pin beta from the list: it rises to just after zeta.
	drive(t, owner, "pin from the list",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"] button.pin`, beta.ID))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"][data-pinned="true"]`, beta.ID))),
	)
	rows = rowsOf(t, owner)
	want = []string{fmt.Sprintf("%d/Blue/true/beta", beta.ID), want[0], want[1], want[3]}
	if strings.Join(rows, " ") != strings.Join(want, " ") {
		t.Fatalf("after pinning beta: %q, want %q", rows, want)
	}
	if path := os.Getenv("POSTERN_SCREENSHOT"); path != "" {
		png := read(t, owner, "screenshot", chromedp.FullScreenshot(100)) // quality 100: PNG
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A client, Viewer of beta only, sees beta alone; Alpha is not
	// found, as if it did not exist.
	const clientPassword = "the client's passphrase"
	apiCall(t, apiURL, inst.AccountToken, "POST", "/users", map[string]any{"Email": "client@example.com", "Password": clientPassword,
		"Role": "Member", "Servers": []map[string]any{{"ServerID": beta.ID, "Access": "Viewer"}}}, nil)
	client := newContext()
	drive(t, client, "a Server Viewer",
		chromedp.Navigate(consoleURL+"/signin"),
		chromedp.SendKeys(chromedp.CSS("#email"), "client@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), clientPassword),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#servers")),
	)
	rows = rowsOf(t, client)
	drive(t, client, "a server the Viewer sees",
		chromedp.Navigate(fmt.Sprintf("%s/servers/%d", consoleURL, beta.ID)),
		chromedp.WaitVisible(chromedp.CSS("#messages")),
	)
	tabs := read(t, client, "tabs", chromedp.Text(chromedp.CSS("nav.tabs")))
	drive(t, client, "a server the Viewer may not see", chromedp.Navigate(fmt.Sprintf("%s/servers/%d", consoleURL, alpha.ID)))
	notFound := read(t, client, "the page of another server", chromedp.Text(chromedp.CSS("#error-message")))
	if strings.Join(rows, " ") != fmt.Sprintf("%d/Blue/true/beta", beta.ID) {
		t.Errorf("the Viewer's servers page: %q, want beta alone", rows)
	}
	if strings.Contains(tabs, "Settings") || strings.Contains(tabs, "Tokens") || !strings.Contains(tabs, "Stats") {
		t.Errorf("the Viewer's tabs: %q", tabs)
	}
	if notFound != "There is no such page." {
		t.Errorf("a server the Viewer may not see: %q", notFound)
	}

	// A second account, whose owner makes owner@localhost its Owner
	// too: one sign-in, a switch from the menu.
	var bravo struct {
		ID           int64
		AccountToken string
	}
	apiCall(t, apiURL, inst.AccountToken, "POST", "/accounts", map[string]any{"Name": "Bravo Agency"}, &bravo)
	apiCall(t, apiURL, bravo.AccountToken, "POST", "/users", map[string]any{"Email": "owner@localhost", "Role": "Owner"}, nil)
	var bravoServer server
	apiCall(t, apiURL, bravo.AccountToken, "POST", "/servers", map[string]any{"Name": "Bravo shop", "Color": "Orange"}, &bravoServer)
	drive(t, owner, "switch accounts",
		chromedp.Navigate(consoleURL+"/"),
		chromedp.SetValue(chromedp.CSS("#account-select"), fmt.Sprint(bravo.ID)),
		chromedp.Submit(chromedp.CSS("#account-select")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"]`, bravoServer.ID))),
	)
	rows = rowsOf(t, owner)
	if strings.Join(rows, " ") != fmt.Sprintf("%d/Orange/false/Bravo shop", bravoServer.ID) {
		t.Fatalf("Bravo's servers: %q", rows)
	}

	// Back in the operator's account, transfer Alpha to Bravo.
	drive(t, owner, "transfer a server",
		chromedp.SetValue(chromedp.CSS("#account-select"), "1"),
		chromedp.Submit(chromedp.CSS("#account-select")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"]`, alpha.ID))),
		chromedp.Navigate(consoleURL+"/account"),
		chromedp.SetValue(chromedp.CSS("#t-server"), fmt.Sprint(alpha.ID)),
		chromedp.SetValue(chromedp.CSS("#t-account"), fmt.Sprint(bravo.ID)),
		chromedp.Submit(chromedp.CSS("#t-account")),
		chromedp.WaitVisible(chromedp.CSS("#transfer-result")),
	)
	result := read(t, owner, "the transfer's result", chromedp.Text(chromedp.CSS("#transfer-result")))
	drive(t, owner, "Bravo after the transfer",
		chromedp.SetValue(chromedp.CSS("#account-select"), fmt.Sprint(bravo.ID)),
		chromedp.Submit(chromedp.CSS("#account-select")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-server-id="%d"]`, alpha.ID))),
	)
	rows = rowsOf(t, owner)
	if !strings.Contains(result, "Alpha is now in the other account") {
		t.Errorf("transfer result %q", result)
	}
	if strings.Join(rows, " ") != fmt.Sprintf("%d/Green/false/Alpha %d/Orange/false/Bravo shop", alpha.ID, bravoServer.ID) {
		t.Errorf("Bravo's servers after the transfer: %q", rows)
	}
	p.stop(t)
}

// TestConsoleTLS serves the console over HTTPS with the SMTP certificate:
// its cookies are Secure, and the printed link is https.
func TestConsoleTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-console-tls")
	addr := p.listening(t, "console")
	p.summary(t)
	p.stdout.waitFor(t, signInLinkRe, "the console's sign-in link")
	if want := "https://" + addr + "/signin/link?token="; !strings.Contains(p.stdout.String(), want) {
		t.Errorf("the printed sign-in link is not %s…:\n%s", want, p.stdout)
	}
	client := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || len(resp.Cookies()) == 0 {
		t.Fatalf("GET /signin over TLS: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	for _, c := range resp.Cookies() {
		if !c.Secure || !c.HttpOnly {
			t.Errorf("cookie %s: Secure %v, HttpOnly %v", c.Name, c.Secure, c.HttpOnly)
		}
	}
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
		t.Error("no Strict-Transport-Security over TLS")
	}
	p.stop(t)
}
