package smtpd

import (
	"crypto/tls"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/postern/postern/store"
)

// The counters follow the dialogue: sessions, AUTH failures, refusals by
// server and reason, acceptances by server, TLS handshakes by version.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ts := newTestServer(t, testOptions{mutate: func(c *Config) { c.Metrics = reg; c.MaxRecipients = 1 }})
	m := ts.srv.metrics
	server := strconv.FormatInt(ts.Inst.ServerID, 10)

	c := greeted(t, ts.Addr)
	c.expect("530 5.7.0", "MAIL FROM:<app@example.com>")
	c.expect("535 5.7.8", "AUTH PLAIN %s", plainIR("wrong", "wrong"))
	c.expect("235 2.7.0", "AUTH PLAIN %s", plainIR(ts.Inst.ServerToken, ts.Inst.ServerToken))
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("501 5.1.3", "RCPT TO:<alice@-bad-.com>")
	c.expect("250", "RCPT TO:<alice@example.net>")
	c.expect("452 4.5.3", "RCPT TO:<bob@example.net>")
	queuedID(t, c.sendData("From: app@example.com\r\nSubject: hi\r\n\r\nhello\r\n"))
	if got := testutil.ToFloat64(m.sessionsOpen); got != 1 {
		t.Errorf("sessions open during the session: %v, want 1", got)
	}
	c.expect("221", "QUIT")

	// Implicit TLS: one handshake.
	tc, err := tls.Dial("tcp", ts.TLSAddr, ts.ClientTLS)
	if err != nil {
		t.Fatal(err)
	}
	tc.Close()

	want := map[[2]string]float64{
		{NoServer, ReasonAuthRequired}: 1, {NoServer, ReasonAuthInvalid}: 1,
		{server, ReasonRecipientSyntax}: 1, {server, ReasonTooManyRecipients}: 1,
	}
	for k, v := range want {
		if got := testutil.ToFloat64(m.refused.WithLabelValues(k[0], k[1])); got != v {
			t.Errorf("refused{server=%q,reason=%q} = %v, want %v", k[0], k[1], got, v)
		}
	}
	if n := testutil.CollectAndCount(m.refused); n != len(want) {
		t.Errorf("%d refusal series, want %d", n, len(want))
	}
	if got := testutil.ToFloat64(m.accepted.WithLabelValues(server)); got != 1 {
		t.Errorf("accepted{server=%s} = %v, want 1", server, got)
	}
	if got := testutil.ToFloat64(m.authFailures); got != 1 {
		t.Errorf("auth failures %v, want 1", got)
	}
	waitFor(t, "both sessions to end", func() bool { return testutil.ToFloat64(m.sessionsOpen) == 0 })
	if got := testutil.ToFloat64(m.sessionsTotal); got != 2 {
		t.Errorf("sessions total %v, want 2", got)
	}
	waitFor(t, "the handshake to be counted", func() bool { return testutil.ToFloat64(m.tlsHandshakes.WithLabelValues("TLSv1.3")) == 1 })

	// Everything is on the registry given.
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	for _, n := range []string{"postern_messages_accepted_total", "postern_messages_refused_total", "postern_smtp_sessions_open",
		"postern_smtp_sessions_total", "postern_smtp_auth_failures_total", "postern_smtp_tls_handshakes_total"} {
		if !slices.Contains(names, n) {
			t.Errorf("%s is not registered (have %v)", n, names)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Every refusal Postern gives carries a reason of the bounded set.
func TestEveryRefusalHasAReason(t *testing.T) {
	cause := errors.New("x")
	for _, e := range []*Error{
		errAuthInvalid(), errSMTPDisabled("s"), errTooManyFailures(time.Now()), errEncryptionRequired(),
		errAuthRequired(), errAlreadyAuthenticated(), errMechanism("X"), errAuthUnavailable(cause),
		errBadSender(), errBadRecipient(), errTooManyRecipients(1), errTooBig(1), errUnknownStream("s"),
		errBadMessage("m"), errNoFrom(), errManyFromFields(2), errBadFrom("w"), errFromAddresses(2),
		errFromLiteral(), errSenderNotRegistered("", "d"), errSenderNotVerified("", "d"), errSenderCheck(cause),
		errInactiveRecipient("r@x", store.Suppression{}), errRecipientCheck(cause), errStorage(cause),
		errServerGone(), errTooManySessions(),
	} {
		if e.Reason == "" || e.Reason == ReasonOther || reasonLabel(e.Reason) != e.Reason {
			t.Errorf("%q has reason %q, want one of RefusalReasons", e.Error(), e.Reason)
		}
	}
	if reasonLabel("anything else") != ReasonOther {
		t.Error("an unknown reason is not counted as other")
	}
	if tlsVersionLabel(0x0305) != "other" || tlsVersionLabel(tls.VersionTLS12) != "TLSv1.2" {
		t.Error("TLS version labels outside the set")
	}
}

// Two servers cannot share a registry by mistake: registering twice fails.
func TestMetricsRegisteredOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err == nil {
		t.Fatal("a second registration on one registry succeeded")
	}
	if _, err := newMetrics(nil); err != nil {
		t.Fatalf("without a registry: %v", err)
	}
}
