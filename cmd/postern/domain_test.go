package main

// Tests of postern domain, run as the real binary against a data
// directory made by postern init and a real DNS server on 127.0.0.1.

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/postern/postern/relay/dnstest"
	"github.com/postern/postern/store"
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
	st, err := store.Open(store.Path(data), store.Options{})
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
	stdout, _, code := runPostern(t, dir, env, "domain", "list")
	if code != 0 || !strings.Contains(stdout, "Account 1 has no domains") {
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
