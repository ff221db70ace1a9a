package main

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/inbound"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/webhook"
)

// scrape reads /metrics with the Prometheus text parser, and returns the
// families and the raw text.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the scrape does not parse: %v\n%s", err, body)
	}
	return families, string(body)
}

// sample is a counter's or gauge's value, or a histogram's count; -1 if
// the series does not exist.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := families[name]
	if f == nil {
		return -1
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// After real sends and deliveries for two servers, /metrics on the
// metrics listener counts each server's mail under its ID, with label
// values from the bounded sets only, and no token, address or domain.
func TestServeMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	inst, data := initialized(t, dir)
	// Two Live servers, straight in the store while serve is not running.
	st, err := bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokenA, tokenB := auth.NewToken(), auth.NewToken()
	var a, b store.Server
	for _, s := range []struct {
		srv   *store.Server
		name  string
		token string
	}{{&a, "acme-production", tokenA}, {&b, "bolt-production", tokenB}} {
		*s.srv, err = st.CreateServer(store.Server{AccountID: inst.AccountID, Name: s.name, DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
			auth.StoreToken(s.token), time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The recipients' domain, on a DNS server and a mail exchanger of the
	// test: gone@ bounces, later@ is deferred once.
	dns := dnstest.New(t)
	dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	dns.SetA("mx.dest.example", netip.MustParseAddr("127.0.0.1"))
	var deferred atomic.Bool
	peer := smtptest.New(t, smtptest.Options{Rcpt: func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		case strings.HasPrefix(to, "later@") && deferred.CompareAndSwap(false, true):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Try again later"}
		}
		return nil
	}})

	p := startPostern(t, dir, []string{
		"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_RETRY_BASE=100ms",
	}, "serve", "-smtp-addr", "127.0.0.1:0")
	addr := p.listening(t, "smtp")
	metricsAddr := p.listening(t, "metrics")

	send(t, addr, tokenA, "ok@dest.example", "a1")
	send(t, addr, tokenA, "gone@dest.example", "a2")
	send(t, addr, tokenB, "later@dest.example", "b1")
	send(t, addr, tokenB, "ok2@dest.example", "b2")
	// Refusals: before AUTH, a wrong token, and one per server.
	c := dialSMTP(t, addr)
	c.expect("250", "EHLO client.test")
	c.expect("530 5.7.0", "MAIL FROM:<app@example.com>")
	c.expect("535 5.7.8", "AUTH PLAIN %s", "AHdyb25nAHdyb25n") // \0wrong\0wrong
	c.quit()
	c = dialSMTP(t, addr)
	c.login(tokenA)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("501 5.1.3", "RCPT TO:<someone@-bad-.example>")
	c.quit()
	c = dialSMTP(t, addr)
	c.login(tokenB)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<ok3@dest.example>")
	c.expect("354", "DATA")
	fmt.Fprintf(c.conn, "From: app@example.com\r\nX-PM-Message-Stream: broadcast\r\nSubject: s\r\n\r\nHi.\r\n.\r\n")
	if r := c.reply(); !strings.HasPrefix(r, "550 5.7.1") {
		t.Fatalf("unknown stream: %q", r)
	}
	c.quit()

	sa, sb := strconv.FormatInt(a.ID, 10), strconv.FormatInt(b.ID, 10)
	var families map[string]*dto.MetricFamily
	var text string
	deadline := time.Now().Add(waitTimeout)
	for {
		families, text = scrape(t, metricsAddr)
		if sample(families, "postern_recipients_delivered_total", "server", sb) == 2 &&
			sample(families, "postern_recipients_bounced_total", "server", sa, "type", "HardBounce") == 1 &&
			sample(families, "postern_smtp_sessions_open") == 0 &&
			sample(families, "postern_queue_depth", "server", sb) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deliveries were not counted within %s:\n%s\nlog:\n%s", waitTimeout, text, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"postern_messages_accepted_total", []string{"server", sa}, 2},
		{"postern_messages_accepted_total", []string{"server", sb}, 2},
		{"postern_messages_refused_total", []string{"server", "none", "reason", "auth_required"}, 1},
		{"postern_messages_refused_total", []string{"server", "none", "reason", "auth_invalid"}, 1},
		{"postern_messages_refused_total", []string{"server", sa, "reason", "recipient_syntax"}, 1},
		{"postern_messages_refused_total", []string{"server", sb, "reason", "unknown_stream"}, 1},
		{"postern_recipients_delivered_total", []string{"server", sa}, 1},
		{"postern_recipients_bounced_total", []string{"server", sa, "type", "HardBounce"}, 1},
		{"postern_recipients_deferred_total", []string{"server", sb}, 1},
		{"postern_recipients_delivered_total", []string{"server", sb}, 2},
		{"postern_delivery_duration_seconds", []string{"server", sa}, 2},
		{"postern_delivery_duration_seconds", []string{"server", sb}, 3},
		{"postern_queue_depth", []string{"server", sa}, 0},
		{"postern_queue_depth", []string{"server", sb}, 0},
		{"postern_queue_oldest_seconds", []string{"server", sa}, 0},
		{"postern_smtp_sessions_open", nil, 0},
		{"postern_smtp_sessions_total", nil, 7},
		{"postern_smtp_auth_failures_total", nil, 1},
	}
	for _, w := range want {
		if got := sample(families, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	// Nothing was counted for the Sandbox server, which sent nothing.
	if got := sample(families, "postern_messages_accepted_total", "server", strconv.FormatInt(inst.ServerID, 10)); got != -1 {
		t.Errorf("accepted for the idle Sandbox server: %v", got)
	}
	for _, name := range []string{"postern_store_commit_seconds", "postern_store_commit_batch_size"} {
		if got := sample(families, name); got < 1 {
			t.Errorf("%s counts %v commits", name, got)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("%s is missing: no Go or process collector", name)
		}
	}

	checkBoundedLabels(t, families, []int64{a.ID, b.ID, inst.ServerID})
	for _, secret := range []string{tokenA, tokenB, inst.AccountToken, inst.ServerToken, "dest.example", "example.com", "@", "acme", "bolt"} {
		if strings.Contains(text, secret) {
			t.Errorf("the scrape contains %q", secret)
		}
	}
	p.stop(t)

	// The log: one line per session end and one per delivery outcome,
	// with the server and the MessageID; never a token or a recipient at
	// the default level.
	logs := p.stderr.String()
	if n := strings.Count(logs, `msg="smtp session end"`); n != 7 {
		t.Errorf("%d session-end lines, want 7", n)
	}
	delivery := regexp.MustCompile(`msg="relay: delivery" server=(\d+) message_id=[0-9a-f-]{36} `)
	if n := len(delivery.FindAllString(logs, -1)); n != 5 {
		t.Errorf("%d delivery lines with server and message_id, want 5 (four messages, one retried):\n%s", n, logs)
	}
	for _, secret := range []string{tokenA, tokenB, "ok@dest.example", "gone@", "later@", "Hello."} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// checkBoundedLabels fails for any label value outside its bounded set:
// server IDs (or "none"), refusal reasons, bounce types, TLS versions,
// DKIM algorithms. A label name not listed here fails too, so a new one
// must say what bounds it.
func checkBoundedLabels(t *testing.T, families map[string]*dto.MetricFamily, servers []int64) {
	t.Helper()
	serverIDs := []string{smtpd.NoServer}
	for _, id := range servers {
		serverIDs = append(serverIDs, strconv.FormatInt(id, 10))
	}
	bounded := map[string][]string{
		"server":      serverIDs,
		"reason":      smtpd.RefusalReasons,
		"type":        relay.BounceTypes,
		"version":     smtpd.TLSVersions,
		"algorithm":   relay.DKIMAlgorithms,
		"policy":      relay.TLSPolicies,
		"result":      slices.Concat(relay.TLSResults, api.EmailResults, webhook.Results, inbound.Results),
		"kind":        inbound.Kinds,
		"disposition": {"none", "quarantine", "reject", "other"},
		"trigger":     {store.TriggerDelivery, store.TriggerBounce},
	}
	for name, f := range families {
		if !strings.HasPrefix(name, "postern_") {
			continue // Go and process collectors: their own labels
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "le" && f.GetType() == dto.MetricType_HISTOGRAM {
					continue
				}
				set, ok := bounded[l.GetName()]
				if !ok {
					t.Errorf("%s has label %s, which no bounded set covers", name, l.GetName())
				} else if !slices.Contains(set, l.GetValue()) {
					t.Errorf("%s{%s=%q}: outside %v", name, l.GetName(), l.GetValue(), set)
				}
			}
		}
	}
}

// With metrics-addr off nothing listens but what is configured: with the
// API and the console off too, the SMTP listener alone.
func TestServeMetricsOff(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("needs Linux's /proc to list the process's listening sockets")
	}
	dir := t.TempDir()
	p := startPostern(t, dir, []string{"POSTERN_METRICS_ADDR=off", "POSTERN_API_ADDR=off", "POSTERN_CONSOLE_ADDR=off"}, "serve", "-smtp-addr", "127.0.0.1:0")
	addr := p.listening(t, "smtp")
	p.stderr.waitFor(t, regexp.MustCompile(`msg="postern started"`), "postern serve")
	if strings.Contains(p.stderr.String(), "listener=metrics") {
		t.Errorf("a metrics listener was opened:\n%s", p.stderr)
	}
	ports := listeningPorts(t, p.cmd.Process.Pid)
	_, smtpPort, _ := strings.Cut(addr, ":")
	if want := []string{smtpPort}; !slices.Equal(ports, want) {
		t.Errorf("postern listens on ports %v, want only SMTP's %v", ports, want)
	}
	p.stop(t)
}

// listeningPorts lists the TCP ports pid listens on, from /proc.
func listeningPorts(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if inode, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	var ports []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st ... inode (field 9)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			n, err := strconv.ParseUint(hexPort, 16, 16)
			if err != nil {
				t.Fatal(err)
			}
			ports = append(ports, strconv.FormatUint(n, 10))
		}
	}
	slices.Sort(ports)
	return ports
}
