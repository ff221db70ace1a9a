package main

// Tests of postern domain, run as the real binary against a data
// directory made by postern init and a real DNS server on 127.0.0.1.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/dkim"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// initData makes an initialised data directory and returns it.
func initData(t *testing.T, dir string) string {
	t.Helper()
	data := filepath.Join(dir, "data")
	if _, stderr, code := runPostern(t, dir, nil, "init", "-data", data, "-json"); code != 0 {
		t.Fatalf("postern init: status %d\n%s", code, stderr)
	}
	return data
}

// storedDomain reads a domain from the store, which postern must have
// released.
func storedDomain(t *testing.T, data, name string) store.Domain {
	t.Helper()
	st, err := bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("store consistency: %v", err)
	}
	d, err := st.DomainByName(name)
	if err != nil {
		t.Fatalf("domain %s: %v", name, err)
	}
	return d
}

// TestDomainAddListVerify walks the operator's path: add a domain, see
// its records, fail to verify it before they are published (then with
// one missing, then with a wrong one), and verify it once both are.
func TestDomainAddListVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := initData(t, dir)
	dns := dnstest.New(t)
	env := []string{"POSTERN_DATA=" + data, "POSTERN_DNS=" + dns.Addr()}

	// add, for scripts.
	stdout, stderr, code := runPostern(t, dir, env, "domain", "add", "Mail.Example.COM.", "-json")
	if code != 0 {
		t.Fatalf("domain add: status %d\n%s", code, stderr)
	}
	var added domainJSON
	if err := json.Unmarshal([]byte(stdout), &added); err != nil {
		t.Fatalf("domain add -json printed %q: %v", stdout, err)
	}
	if added.Name != "mail.example.com" || added.AccountID != 1 || added.ID == 0 || added.DKIMVerified || len(added.DKIMRecords) != 2 {
		t.Fatalf("domain add -json: %+v", added)
	}
	edRec, rsaRec := added.DKIMRecords[0], added.DKIMRecords[1]
	hostRe := func(alg string) *regexp.Regexp {
		return regexp.MustCompile(`^pstrn-` + alg + `-\d{8}-[0-9a-f]{4}\._domainkey\.mail\.example\.com$`)
	}
	if edRec.Algorithm != "ed25519" || !hostRe("ed").MatchString(edRec.Host) || !strings.HasPrefix(edRec.TextValue, "v=DKIM1; k=ed25519; p=") {
		t.Errorf("Ed25519 record %+v", edRec)
	}
	if rsaRec.Algorithm != "rsa" || !hostRe("rsa").MatchString(rsaRec.Host) || !strings.HasPrefix(rsaRec.TextValue, "v=DKIM1; k=rsa; p=") {
		t.Errorf("RSA record %+v", rsaRec)
	}
	if added.DKIMHost != rsaRec.Host || added.DKIMTextValue != rsaRec.TextValue {
		t.Errorf("DKIMHost/DKIMTextValue %q/%q are not the RSA record", added.DKIMHost, added.DKIMTextValue)
	}
	// The store has the private keys behind the printed records, and the
	// output has none.
	d := storedDomain(t, data, "mail.example.com")
	if d.AccountID != 1 || d.DKIMVerified || len(d.Keys) != 2 {
		t.Fatalf("stored domain %+v", d)
	}
	for i, k := range d.Keys {
		if len(k.PrivateKey) == 0 || k.Host != added.DKIMRecords[i].Host || k.TextValue != added.DKIMRecords[i].TextValue || k.Algorithm != added.DKIMRecords[i].Algorithm {
			t.Errorf("stored key %d: %s %s %q, private key %d bytes", i, k.Algorithm, k.Host, k.TextValue, len(k.PrivateKey))
		}
	}
	if strings.Contains(stdout, "PRIVATE") || strings.Contains(strings.ToLower(stdout), "privatekey") {
		t.Errorf("domain add printed a private key: %s", stdout)
	}

	// A second add of the same name, in any case, fails and changes nothing.
	for _, name := range []string{"mail.example.com", "MAIL.example.com"} {
		_, stderr, code = runPostern(t, dir, env, "domain", "add", name)
		if code != 1 || !strings.Contains(stderr, "mail.example.com is already registered (account 1); nothing was changed") {
			t.Errorf("second domain add %s: status %d, stderr %q; want 1 and already registered", name, code, stderr)
		}
	}
	if again := storedDomain(t, data, "mail.example.com"); again.Keys[0].Selector != d.Keys[0].Selector || again.ID != d.ID {
		t.Errorf("the second add changed the domain: %+v", again)
	}

	// add, for people: the host and value of both records, zone-file
	// lines with the RSA value split into strings of 255 bytes, and what
	// to run next.
	stdout, stderr, code = runPostern(t, dir, env, "domain", "add", "-account", "1", "second.example")
	if code != 0 {
		t.Fatalf("domain add second.example: status %d\n%s", code, stderr)
	}
	second := storedDomain(t, data, "second.example")
	for _, k := range second.Keys {
		if !strings.Contains(stdout, "host:  "+k.Host+"\n") || !strings.Contains(stdout, "value: "+k.TextValue+"\n") {
			t.Errorf("domain add output lacks the %s record %s %q:\n%s", k.Algorithm, k.Host, k.TextValue, stdout)
		}
		if !strings.Contains(stdout, k.Host+". IN TXT \""+k.TextValue[:min(255, len(k.TextValue))]+`"`) {
			t.Errorf("domain add output lacks the zone-file line of %s:\n%s", k.Host, stdout)
		}
	}
	if !strings.Contains(stdout, "postern domain verify second.example") {
		t.Errorf("domain add output does not say to run verify:\n%s", stdout)
	}

	// list shows both, unverified.
	stdout, stderr, code = runPostern(t, dir, env, "domain", "list")
	if code != 0 {
		t.Fatalf("domain list: status %d\n%s", code, stderr)
	}
	for _, name := range []string{"mail.example.com", "second.example"} {
		if !regexp.MustCompile(`(?m)^\d+\s+` + regexp.QuoteMeta(name) + `\s+no\s`).MatchString(stdout) {
			t.Errorf("domain list does not show %s unverified:\n%s", name, stdout)
		}
	}

	verify := func() (string, string, int) {
		t.Helper()
		return runPostern(t, dir, env, "domain", "verify", "mail.example.com")
	}
	// Nothing published yet.
	stdout, stderr, code = verify()
	if code != 1 || !strings.Contains(stderr, "mail.example.com is not verified: 0 of 2 DKIM records are published") ||
		!strings.Contains(stdout, edRec.Host+": missing") || !strings.Contains(stdout, rsaRec.Host+": missing") {
		t.Errorf("verify before publishing: status %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	// The Ed25519 record only.
	dns.SetTXT(edRec.Host, edRec.TextValue)
	stdout, stderr, code = verify()
	if code != 1 || !strings.Contains(stderr, "1 of 2") || !strings.Contains(stdout, edRec.Host+": published") || !strings.Contains(stdout, rsaRec.Host+": missing") {
		t.Errorf("verify with the RSA record missing: status %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	// The RSA record with another key (second.example's).
	dns.SetTXT(rsaRec.Host, "google-site-verification=abc", second.Keys[1].TextValue)
	stdout, stderr, code = verify()
	if code != 1 || !strings.Contains(stdout, rsaRec.Host+": different") || !strings.Contains(stdout, "found instead: "+second.Keys[1].TextValue) {
		t.Errorf("verify with a wrong RSA key: status %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if storedDomain(t, data, "mail.example.com").DKIMVerified {
		t.Fatal("the domain is verified before its records are published")
	}
	// Both published: the RSA one as a DNS provider might write it, with
	// other spacing, and beside an unrelated TXT record. dnstest splits
	// it into 255-byte strings, as DKIM keys are published.
	spaced := strings.ReplaceAll(rsaRec.TextValue, "; ", ";") + ";"
	dns.SetTXT(rsaRec.Host, "google-site-verification=abc", spaced)
	stdout, stderr, code = verify()
	if code != 0 || !strings.Contains(stdout, "Domain mail.example.com is verified.") {
		t.Fatalf("verify once published: status %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if d := storedDomain(t, data, "mail.example.com"); !d.DKIMVerified || d.VerifiedAt.IsZero() {
		t.Errorf("after verify: DKIMVerified %v, VerifiedAt %v", d.DKIMVerified, d.VerifiedAt)
	}
	var queried bool
	for _, q := range dns.Queries() {
		queried = queried || (q.Name == rsaRec.Host && q.Type == "TXT")
	}
	if !queried {
		t.Error("verify did not ask the configured DNS server")
	}

	// list -json shows it verified.
	stdout, stderr, code = runPostern(t, dir, env, "domain", "list", "-json")
	var listed []domainJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &listed) != nil {
		t.Fatalf("domain list -json: status %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if len(listed) != 2 || listed[0].Name != "mail.example.com" || !listed[0].DKIMVerified || listed[1].Name != "second.example" || listed[1].DKIMVerified {
		t.Errorf("domain list -json: %+v", listed)
	}
	// list, for people: this table, byte for byte.
	day := func(at time.Time) string { return at.UTC().Format("2006-01-02") }
	selectors := func(d store.Domain) string { return d.Keys[0].Selector + " " + d.Keys[1].Selector }
	mail := storedDomain(t, data, "mail.example.com")
	want := "ID  NAME              VERIFIED          CREATED     SELECTORS\n" +
		fmt.Sprintf("%d   mail.example.com  yes (%s)  %s  %s\n", mail.ID, day(mail.VerifiedAt), day(mail.CreatedAt), selectors(mail)) +
		fmt.Sprintf("%d   second.example    no                %s  %s\n", second.ID, day(second.CreatedAt), selectors(second))
	if stdout, stderr, code = runExactly(t, env, "domain", "list"); code != 0 || stdout != want {
		t.Errorf("domain list: status %d, stderr %q, printed\n%q\nwant\n%q", code, stderr, stdout, want)
	}

	// A record withdrawn: verify says so and the domain is unverified.
	dns.SetTXT(edRec.Host, "v=spf1 -all")
	if _, _, code = verify(); code != 1 || storedDomain(t, data, "mail.example.com").DKIMVerified {
		t.Errorf("verify after the Ed25519 record went: status %d, still verified", code)
	}
	// A DNS failure changes nothing.
	dns.SetTXT(edRec.Host, edRec.TextValue)
	if _, _, code = verify(); code != 0 {
		t.Fatalf("verify again: status %d", code)
	}
	dns.SetServFail(rsaRec.Host)
	stdout, stderr, code = verify()
	if code != 1 || !strings.Contains(stderr, "DNS did not answer for every record") || !strings.Contains(stdout, rsaRec.Host+": dns-error") {
		t.Errorf("verify with SERVFAIL: status %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if !storedDomain(t, data, "mail.example.com").DKIMVerified {
		t.Error("a DNS failure unverified the domain")
	}
}

func TestDomainErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := initData(t, dir)
	env := []string{"POSTERN_DATA=" + data}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"domain"}, "a command is needed: add, list or verify"},
		{[]string{"domain", "remove", "x.example"}, `unknown command "remove"`},
		{[]string{"domain", "add"}, "the domain name is missing"},
		{[]string{"domain", "add", "a.example", "b.example"}, `unexpected argument "b.example"`},
		{[]string{"domain", "add", "not a domain"}, `"not a domain" is not a domain name`},
		{[]string{"domain", "add", "localhost"}, `"localhost" is not a domain name`},
		{[]string{"domain", "add", "bücher.example"}, "xn-- form"},
		{[]string{"domain", "add", "x.example", "-account", "7"}, "account 7 does not exist"},
		{[]string{"domain", "list", "-account", "7"}, "account 7 does not exist"},
		{[]string{"domain", "verify", "nowhere.example"}, "no domain nowhere.example; add it with: postern domain add nowhere.example"},
		{[]string{"domain", "list", "-data", filepath.Join(dir, "absent")}, "no store in " + filepath.Join(dir, "absent") + ": run postern init"},
	} {
		_, stderr, code := runPostern(t, dir, env, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("postern %q: status %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	// None of that created anything.
	stdout, _, code := runExactly(t, env, "domain", "list")
	if code != 0 || stdout != "Account 1 has no domains; add one with: postern domain add NAME\n" {
		t.Errorf("domain list after the errors: status %d, %q", code, stdout)
	}
}

// While serve runs, it holds the store: the domain commands say so
// rather than wait.
func TestDomainWhileServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"POSTERN_SMTP_ADDR=127.0.0.1:0"}
	p := startPostern(t, dir, env, "serve")
	p.listening(t, "smtp")
	_, stderr, code := runPostern(t, dir, env, "domain", "add", "busy.example")
	if code != 1 || !strings.Contains(stderr, "is locked by another process (is postern already running?)") {
		t.Errorf("domain add while serving: status %d, stderr %q", code, stderr)
	}
	p.stop(t)
	if _, stderr, code = runPostern(t, dir, env, "domain", "add", "busy.example"); code != 0 {
		t.Errorf("domain add once serve stopped: status %d, stderr %q", code, stderr)
	}
}

// domainTestAPI serves the HTTP API of a store of its own, in this process,
// as postern serve does, with a DNS server for verifyDkim.
type domainTestAPI struct {
	URL  string
	inst auth.Installation
	st   *bolt.Store
	dns  *dnstest.Server
}

func newDomainTestAPI(t *testing.T) *domainTestAPI {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Check(); err != nil {
			t.Errorf("store consistency: %v", err)
		}
		st.Close()
	})
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dns := dnstest.New(t)
	a, err := api.New(api.Config{Store: st, Auth: auth.NewAuthenticator(st), Resolver: relay.NewResolver(dns.Addr()), GenerateKeys: dkim.Generate})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	return &domainTestAPI{URL: hs.URL, inst: inst, st: st, dns: dns}
}

// TestDomainOverAPI runs postern domain add, list and verify against a
// running API, with the token and URL from the environment and from flags.
func TestDomainOverAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := newDomainTestAPI(t)
	env := []string{"POSTERN_TOKEN=" + srv.inst.AccountToken, "POSTERN_URL=" + srv.URL}
	flags := []string{"-token", srv.inst.AccountToken, "-url", srv.URL + "/"}

	// add -json prints the API's answer.
	stdout, stderr, code := runPostern(t, dir, env, "domain", "add", "Mail.Example.COM.", "-json")
	if code != 0 {
		t.Fatalf("domain add: status %d\n%s", code, stderr)
	}
	var added api.DomainDetails
	if err := json.Unmarshal([]byte(stdout), &added); err != nil {
		t.Fatalf("domain add -json printed %q: %v", stdout, err)
	}
	stored, err := srv.st.DomainByName("mail.example.com")
	if err != nil || stored.ID != added.ID || stored.AccountID != srv.inst.AccountID {
		t.Fatalf("stored %+v, %v; printed %+v", stored, err, added)
	}
	if added.Name != "mail.example.com" || added.DKIMUpdateStatus != "Pending" || len(added.DKIMRecords) != 2 ||
		added.DKIMRecords[0].Host != stored.Keys[0].Host || added.DKIMRecords[1].TextValue != stored.Keys[1].TextValue ||
		added.DKIMPendingHost != stored.Keys[1].Host {
		t.Fatalf("domain add -json: %+v", added)
	}
	if strings.Contains(strings.ToLower(stdout), "private") {
		t.Errorf("domain add printed a private key: %s", stdout)
	}

	// add for people, with flags: both records, the zone-file lines.
	stdout, stderr, code = runPostern(t, dir, nil, append([]string{"domain", "add", "second.example", "-return-path", "pm-bounces.second.example"}, flags...)...)
	if code != 0 {
		t.Fatalf("domain add second.example: status %d\n%s", code, stderr)
	}
	second, err := srv.st.DomainByName("second.example")
	if err != nil || second.ReturnPathDomain != "pm-bounces.second.example" {
		t.Fatalf("second.example stored: %+v %v", second, err)
	}
	for _, k := range second.Keys {
		if !strings.Contains(stdout, "host:  "+k.Host+"\n") || !strings.Contains(stdout, "value: "+k.TextValue+"\n") ||
			!strings.Contains(stdout, k.Host+". IN TXT \""+k.TextValue[:min(255, len(k.TextValue))]+`"`) {
			t.Errorf("domain add output lacks the %s record:\n%s", k.Algorithm, stdout)
		}
	}
	if !strings.Contains(stdout, "Domain second.example added (ID ") || !strings.Contains(stdout, "postern domain verify second.example") {
		t.Errorf("domain add output:\n%s", stdout)
	}

	// A taken name: the API's message, status 1.
	_, stderr, code = runPostern(t, dir, env, "domain", "add", "MAIL.example.com")
	if code != 1 || !strings.Contains(stderr, "The domain mail.example.com already exists. (HTTP 422, ErrorCode 512)") {
		t.Errorf("second add: status %d, stderr %q", code, stderr)
	}

	// list, for people and for scripts.
	stdout, stderr, code = runPostern(t, dir, env, "domain", "list")
	if code != 0 {
		t.Fatalf("domain list: status %d\n%s", code, stderr)
	}
	for _, d := range []store.Domain{stored, second} {
		if !regexp.MustCompile(`(?m)^\d+\s+` + regexp.QuoteMeta(d.Name) + `\s+no\s+Pending\s+-$`).MatchString(stdout) {
			t.Errorf("domain list does not show %s unverified:\n%s", d.Name, stdout)
		}
		for _, k := range d.Keys {
			if !regexp.MustCompile(`(?m)^  ` + algorithmName(k.Algorithm) + `\s+pending\s+` + regexp.QuoteMeta(k.Host+" TXT "+k.TextValue) + `$`).MatchString(stdout) {
				t.Errorf("domain list lacks the record %s:\n%s", k.Host, stdout)
			}
		}
	}
	stdout, stderr, code = runPostern(t, dir, env, "domain", "list", "-json")
	var listed []api.DomainDetails
	if code != 0 || json.Unmarshal([]byte(stdout), &listed) != nil || len(listed) != 2 ||
		listed[0].Name != "mail.example.com" || listed[1].Name != "second.example" || len(listed[1].DKIMRecords) != 2 {
		t.Fatalf("domain list -json: status %d, %q, %q", code, stdout, stderr)
	}

	// verify: not yet, then once published.
	_, stderr, code = runPostern(t, dir, env, "domain", "verify", "mail.example.com")
	if code != 1 || !strings.Contains(stderr, "mail.example.com is not verified") {
		t.Errorf("verify before publishing: status %d, %q", code, stderr)
	}
	for _, r := range added.DKIMRecords {
		srv.dns.SetTXT(r.Host, r.TextValue)
	}
	stdout, stderr, code = runPostern(t, dir, env, "domain", "verify", "mail.example.com")
	if code != 0 || !strings.Contains(stdout, "Domain mail.example.com is verified.") {
		t.Fatalf("verify once published: status %d\n%s\n%s", code, stdout, stderr)
	}
	_, stderr, code = runPostern(t, dir, env, "domain", "verify", "nowhere.example")
	if code != 1 || !strings.Contains(stderr, "the account has no domain nowhere.example") {
		t.Errorf("verify of an unknown domain: status %d, %q", code, stderr)
	}

	// A rotation: list shows the pending records, verify completes it.
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/domains/%d/rotatedkim", srv.URL, added.ID), nil)
	req.Header.Set("X-Postmark-Account-Token", srv.inst.AccountToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("rotatedkim: %v %v", resp, err)
	}
	resp.Body.Close()
	rotating, _ := srv.st.Domain(added.ID)
	stdout, _, _ = runPostern(t, dir, env, "domain", "list")
	for _, k := range rotating.Keys {
		if !regexp.MustCompile(`(?m)^  \S+\s+active\s+` + regexp.QuoteMeta(k.Host) + ` `).MatchString(stdout) {
			t.Errorf("list during the rotation lacks the active %s:\n%s", k.Host, stdout)
		}
	}
	for _, k := range rotating.PendingKeys {
		if !regexp.MustCompile(`(?m)^  \S+\s+pending\s+` + regexp.QuoteMeta(k.Host) + ` `).MatchString(stdout) {
			t.Errorf("list during the rotation lacks the pending %s:\n%s", k.Host, stdout)
		}
	}
	_, stderr, code = runPostern(t, dir, env, "domain", "verify", "mail.example.com")
	if code != 1 || !strings.Contains(stderr, "the pending records are not all published yet") {
		t.Errorf("verify during the rotation: status %d, %q", code, stderr)
	}
	for _, k := range rotating.PendingKeys {
		srv.dns.SetTXT(k.Host, k.TextValue)
	}
	if _, stderr, code = runPostern(t, dir, env, "domain", "verify", "mail.example.com", "-json"); code != 0 {
		t.Fatalf("verify once the new records are published: status %d, %q", code, stderr)
	}
	stdout, _, _ = runPostern(t, dir, env, "domain", "list")
	if !regexp.MustCompile(`(?m)^\d+\s+mail\.example\.com\s+yes\s+Verified\s+keep in DNS$`).MatchString(stdout) {
		t.Errorf("list after the rotation:\n%s", stdout)
	}
}

func TestDomainOverAPIErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := newDomainTestAPI(t)
	// An address nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"POSTERN_URL=" + srv.URL}, []string{"domain", "list", "-token", "wrong"}, "(HTTP 401, ErrorCode 10)"},
		{nil, []string{"domain", "list", "-token", srv.inst.ServerToken, "-url", srv.URL}, "(HTTP 401, ErrorCode 10)"},
		{[]string{"POSTERN_TOKEN=" + srv.inst.AccountToken, "POSTERN_URL=" + srv.URL}, []string{"domain", "add", "x.example", "-account", "1"}, "-account is for the direct mode"},
		{[]string{"POSTERN_TOKEN=" + srv.inst.AccountToken}, []string{"domain", "list", "-url", "ftp://x"}, `the API URL "ftp://x" is not an http:// or https:// URL`},
		{[]string{"POSTERN_TOKEN=" + srv.inst.AccountToken}, []string{"domain", "list", "-url", "http://" + closed}, "is postern serve running with its API at"},
		{[]string{"POSTERN_TOKEN=" + srv.inst.AccountToken, "POSTERN_URL=" + srv.URL}, []string{"domain", "add", "not a domain"}, `"not a domain" is not a domain name`},
		{[]string{"POSTERN_TOKEN=" + srv.inst.AccountToken, "POSTERN_URL=" + srv.URL}, []string{"domain", "add", "x.example", "-return-path", "y.example"}, "must be a subdomain of x.example"},
		{[]string{"POSTERN_DATA=" + filepath.Join(dir, "none")}, []string{"domain", "add", "x.example", "-return-path", "pm.x.example"}, "-return-path is for the API mode"},
		{nil, []string{"domain", "list", "-url", srv.URL}, "-url needs an account token"},
	} {
		_, stderr, code := runPostern(t, dir, tc.env, tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("postern %q: status %d, stderr %q; want 1 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if ds, _ := srv.st.Domains(srv.inst.AccountID); len(ds) != 0 {
		t.Errorf("the errors made domains: %+v", ds)
	}
}

// TestDomainOverServeAPI: the API mode against the real postern serve.
func TestDomainOverServeAPI(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"POSTERN_SMTP_ADDR=127.0.0.1:0"}
	p := startPostern(t, dir, env, "serve")
	inst := p.summary(t)
	url := "http://" + p.listening(t, "api")
	apiEnv := append(env, "POSTERN_TOKEN="+inst.AccountToken, "POSTERN_URL="+url)
	stdout, stderr, code := runPostern(t, dir, apiEnv, "domain", "add", "served.example", "-json")
	var added api.DomainDetails
	if code != 0 || json.Unmarshal([]byte(stdout), &added) != nil || added.Name != "served.example" || len(added.DKIMRecords) != 2 {
		t.Fatalf("domain add over serve's API: status %d, %q, %q", code, stdout, stderr)
	}
	stdout, stderr, code = runPostern(t, dir, apiEnv, "domain", "list")
	if code != 0 || !strings.Contains(stdout, added.DKIMRecords[1].Host+" TXT "+added.DKIMRecords[1].TextValue) {
		t.Fatalf("domain list over serve's API: status %d, %q, %q", code, stdout, stderr)
	}
	// The store mode still cannot run beside serve, and says so.
	if _, stderr, code = runPostern(t, dir, env, "domain", "list"); code != 1 || !strings.Contains(stderr, "is locked by another process") {
		t.Errorf("store mode while serving: status %d, %q", code, stderr)
	}
	p.stop(t)
	if d := storedDomain(t, filepath.Join(dir, "postern-data"), "served.example"); d.ID != added.ID || len(d.Keys) != 2 {
		t.Errorf("stored %+v", d)
	}
}
