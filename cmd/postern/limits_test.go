package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// A daily quota set with postern server edit refuses the server's next
// message over SMTP, leaves another server sending, and still holds after
// postern serve restarts.
func TestServerLimitsOverSMTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, smtpAddr, apiURL, inst := serveWithAPI(t, dir)
	env := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}
	run := cli(t, dir, env)
	id := fmt.Sprint(inst.ServerID)
	out := run("server", "edit", id, "-daily-quota", "2", "-retention-days", "30")
	for _, re := range []string{`(?m)^DailyQuota:\s+2$`, `(?m)^RetentionDays:\s+30$`, `(?m)^RateLimitPerMinute:\s+0 \(no limit\)$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("server edit: no %s in\n%s", re, out)
		}
	}
	if _, stderr, code := runPostern(t, dir, env, "server", "edit", id, "-retention-days", "0"); code != 1 || !strings.Contains(stderr, "RetentionDays must be from 1 to 365 days, got 0.") {
		t.Errorf("server edit -retention-days 0: status %d, %q", code, stderr)
	}
	out = run("server", "create", "other", "-sandbox", "-rate-limit", "100")
	m := regexp.MustCompile(`Server token: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("server create:\n%s", out)
	}
	other := m[1]

	const refused = "451 4.7.1 Server daily quota of 2 messages reached; it resets at 00:00 UTC"
	overQuota := func(addr string) {
		t.Helper()
		c := dialSMTP(t, addr)
		c.login(inst.ServerToken)
		c.expect(refused, "MAIL FROM:<app@example.com>")
		c.quit()
	}
	send(t, smtpAddr, inst.ServerToken, "a@example.net", "one")
	send(t, smtpAddr, inst.ServerToken, "a@example.net", "two")
	overQuota(smtpAddr)
	send(t, smtpAddr, other, "b@example.net", "the other server sends")

	p.stop(t)
	p = startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0")
	smtpAddr = p.listening(t, "smtp")
	overQuota(smtpAddr)
	send(t, smtpAddr, other, "b@example.net", "and still does")
	p.stop(t)
	openCheckedStore(t, dir+"/postern-data")
}
