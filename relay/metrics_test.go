package relay_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/relay"
)

// gathered reads every sample of reg as "name{label=value,...}" → value
// (histograms: their _count).
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// The relay counts recipients delivered, deferred and bounced by type
// under their server, attempts in the duration histogram, DKIM
// signatures by algorithm, and reads each server's queue at scrape time.
func TestRelayMetrics(t *testing.T) {
	e := newE2E(t)
	a, tokenA := e.LiveServer("a")
	b, tokenB := e.LiveServer("b")
	e.SendingDomain(e.Inst.AccountID, "app.example")
	e.Route("dest.example", stack.Loopbacks[1])
	var deferredOnce atomic.Bool
	e.Peer(stack.Loopbacks[1], smtptest.Options{Rcpt: func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		case strings.HasPrefix(to, "later@") && deferredOnce.CompareAndSwap(false, true):
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Try later"}
		}
		return nil
	}})
	// Queued before the relay runs: the queue shows it.
	idA := e.Send(tokenA, "app@app.example", []string{"ok@dest.example", "gone@dest.example"}, testBody("app@app.example", "ok@dest.example", "a"))
	sa, sb := strconv.FormatInt(a.ID, 10), strconv.FormatInt(b.ID, 10)
	idle := prometheus.NewRegistry()
	cfg := e.RelayConfig()
	cfg.Metrics = idle
	w, err := relay.NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if w.Running() {
		t.Error("a worker never run says it is running")
	}
	got := gathered(t, idle)
	if got["postern_queue_depth{server="+sa+"}"] != 1 || got["postern_queue_oldest_seconds{server="+sa+"}"] <= 0 {
		t.Fatalf("before delivery: %v, want server %s's queue at depth 1 and waiting", got, sa)
	}
	if _, err := relay.NewWorker(cfg); err == nil {
		t.Fatal("a second worker registered on the same registry")
	}

	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	running, stop := e.StartRelay(cfg)
	stack.WaitFor(t, "the relay to run", running.Running)
	idB := e.Send(tokenB, "app@app.example", []string{"later@dest.example", "ok2@dest.example"}, testBody("app@app.example", "later@dest.example", "b"))
	e.WaitFinal(a.ID, idA)
	e.WaitFinal(b.ID, idB)

	stack.WaitFor(t, "the counts", func() bool {
		got = gathered(t, reg)
		return got["postern_recipients_delivered_total{server="+sb+"}"] == 2
	})
	want := map[string]float64{
		"postern_recipients_delivered_total{server=" + sa + "}":               1,
		"postern_recipients_bounced_total{server=" + sa + ",type=HardBounce}": 1,
		"postern_recipients_deferred_total{server=" + sb + "}":                1,
		"postern_recipients_delivered_total{server=" + sb + "}":               2,
		"postern_delivery_duration_seconds{server=" + sa + "}":                1,
		"postern_delivery_duration_seconds{server=" + sb + "}":                2,
		"postern_dkim_signatures_total{algorithm=ed25519}":                    2,
		"postern_dkim_signatures_total{algorithm=rsa}":                        2,
		"postern_queue_depth{server=" + sa + "}":                              0,
		"postern_queue_depth{server=" + sb + "}":                              0,
		"postern_queue_oldest_seconds{server=" + sa + "}":                     0,
		"postern_queue_oldest_seconds{server=" + sb + "}":                     0,
	}
	// The sink offers no STARTTLS, and nothing demands TLS of it: each
	// new session counts (how many depends on the reuse of sessions).
	const plaintext = "postern_delivery_tls_total{policy=none,result=success}"
	if got[plaintext] < 1 || got[plaintext] > 3 {
		t.Errorf("%s = %v, want 1 to 3 sessions", plaintext, got[plaintext])
	}
	delete(got, plaintext)
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, got[k])
		}
	}
	stop()
	if running.Running() {
		t.Error("the relay says it runs after Run returned")
	}
}
