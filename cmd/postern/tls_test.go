package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/internal/testutil/testca"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// policyServer serves MTA-STS policies over HTTPS on loopback, by the
// Host the request names: the mta-sts.<domain> of each domain.
type policyServer struct {
	mu       sync.Mutex
	policies map[string]string // by domain
	srv      *httptest.Server
}

func newPolicyServer(t *testing.T, ca *testca.CA, domains ...string) *policyServer {
	ps := &policyServer{policies: map[string]string{}}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		ps.mu.Lock()
		policy, ok := ps.policies[strings.TrimPrefix(host, "mta-sts.")]
		ps.mu.Unlock()
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	}))
	var names []string
	for _, d := range domains {
		names = append(names, "mta-sts."+d)
	}
	ps.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(names...)}}
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *policyServer) port() string {
	_, port, _ := net.SplitHostPort(ps.srv.Listener.Addr().String())
	return port
}

// publish announces domain's policy in DNS under id and serves it.
func (ps *policyServer) publish(dns *dnstest.Server, domain, id, mode, mx string) {
	dns.SetTXT("_mta-sts."+domain, "v=STSv1; id="+id+";")
	dns.SetA("mta-sts."+domain, netip.MustParseAddr("127.0.0.1"))
	ps.mu.Lock()
	ps.policies[domain] = "version: STSv1\nmode: " + mode + "\nmx: " + mx + "\nmax_age: 604800\n"
	ps.mu.Unlock()
}

// mxPeer starts the MX host named host at ip, on port (0: any), with a
// certificate for certName from ca (none: no STARTTLS).
func mxPeer(t *testing.T, dns *dnstest.Server, host string, ip netip.Addr, port int, cert *tls.Certificate) *smtptest.Peer {
	t.Helper()
	opts := smtptest.Options{Addr: netip.AddrPortFrom(ip, uint16(port)).String()}
	if cert != nil {
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	dns.SetA(host, ip)
	return smtptest.New(t, opts)
}

type messageDetails struct {
	Status        string
	MessageEvents []struct {
		Type    string
		Details struct {
			DeliveryMessage string
			TLS             *api.TLSDetails
		}
	}
}

// TestOutboundTLSPolicies runs the binary against four destinations on
// loopback, trusting the test CA only through SSL_CERT_FILE, as a real
// installation trusts the public authorities: MTA-STS enforce with a
// good certificate, MTA-STS enforce where STARTTLS was stripped, MTA-STS
// testing with a certificate for another name, and DANE. Then it stops,
// the policy server goes down, and the cached policy still holds after
// the restart.
func TestOutboundTLSPolicies(t *testing.T) {
	dir := t.TempDir()
	inst, data := initialized(t, dir)
	st, err := bolt.Open(filepath.Join(data, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token := auth.NewToken()
	if _, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "tls", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now()); err != nil {
		t.Fatal(err)
	}
	st.Close()

	ca := testca.New(t)
	dns := dnstest.New(t)
	ps := newPolicyServer(t, ca, "sts.example", "stripped.example", "testing.example")
	goodCert := ca.Issue("mx.sts.example")
	sts := mxPeer(t, dns, "mx.sts.example", netip.MustParseAddr("127.0.0.1"), 0, &goodCert)
	port := sts.Port()
	stripped := mxPeer(t, dns, "mx.stripped.example", netip.MustParseAddr("127.0.0.2"), port, nil)
	wrongCert := ca.Issue("other.example")
	testing_ := mxPeer(t, dns, "mx.testing.example", netip.MustParseAddr("127.0.0.3"), port, &wrongCert)
	// DANE-EE needs no authority: a certificate from a CA nobody trusts.
	daneCert := testca.New(t).Issue("mx.dane.example")
	danePeer := mxPeer(t, dns, "mx.dane.example", netip.MustParseAddr("127.0.0.4"), port, &daneCert)
	leaf, _ := x509.ParseCertificate(daneCert.Certificate[0])
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	dns.SetTLSA("_25._tcp.mx.dane.example", dnstest.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: spki[:]})
	dns.SetSigned("dane.example")
	for _, d := range []string{"sts", "stripped", "testing", "dane"} {
		dns.SetMX(d+".example", []dnstest.MX{{Host: "mx." + d + ".example", Pref: 10}})
	}
	ps.publish(dns, "sts.example", "1", "enforce", "mx.sts.example")
	ps.publish(dns, "stripped.example", "1", "enforce", "*.stripped.example")
	ps.publish(dns, "testing.example", "1", "testing", "mx.testing.example")

	env := []string{"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(port), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_MTA_STS_PORT=" + ps.port(), "SSL_CERT_FILE=" + ca.WriteBundle(),
		"POSTERN_RETRY_BASE=1h"}
	p := startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	addr, apiURL, metricsAddr := p.listening(t, "smtp"), "http://"+p.listening(t, "api"), p.listening(t, "metrics")

	details := func(id string) messageDetails {
		var d messageDetails
		if err := json.Unmarshal([]byte(get(t, apiURL, "/messages/outbound/"+id+"/details", token)), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// attempted sends one message to domain and waits for its first
	// attempt's event.
	attempted := func(domain string) messageDetails {
		t.Helper()
		id := send(t, addr, token, "rcpt@"+domain, "to "+domain)
		var d messageDetails
		stack.WaitFor(t, "an attempt to "+domain, func() bool {
			d = details(id)
			return len(d.MessageEvents) > 0
		})
		return d
	}

	d := attempted("sts.example")
	if ev := d.MessageEvents[0]; ev.Type != "Delivered" || ev.Details.TLS == nil || ev.Details.TLS.Policy != "mta-sts" ||
		!ev.Details.TLS.CertificateVerified || ev.Details.TLS.Version == "" || ev.Details.TLS.Cipher == "" {
		t.Errorf("MTA-STS enforce, good certificate: %+v %+v", ev, ev.Details.TLS)
	}
	d = attempted("stripped.example")
	if ev := d.MessageEvents[0]; ev.Type != "Transient" || !strings.Contains(ev.Details.DeliveryMessage, "STARTTLS") || stripped.Received() != 0 {
		t.Errorf("MTA-STS enforce, no STARTTLS: %+v; %d sent", ev, stripped.Received())
	}
	d = attempted("testing.example")
	if ev := d.MessageEvents[0]; ev.Type != "Delivered" || ev.Details.TLS == nil || ev.Details.TLS.Policy != "opportunistic" || ev.Details.TLS.CertificateVerified {
		t.Errorf("MTA-STS testing, wrong certificate: %+v %+v", ev, ev.Details.TLS)
	}
	d = attempted("dane.example")
	if ev := d.MessageEvents[0]; ev.Type != "Delivered" || ev.Details.TLS == nil || ev.Details.TLS.Policy != "dane" || !ev.Details.TLS.CertificateVerified {
		t.Errorf("DANE 3 1 1: %+v %+v", ev, ev.Details.TLS)
	}
	if sts.Received() != 1 || testing_.Received() != 1 || danePeer.Received() != 1 {
		t.Errorf("received: sts %d, testing %d, dane %d; want one each", sts.Received(), testing_.Received(), danePeer.Received())
	}

	// What the TLS report to testing.example would say.
	out, errOut, code := runPostern(t, dir, []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}, "tlsrpt", "preview", "-domain", "testing.example", "-json")
	if code != 0 {
		t.Fatalf("tlsrpt preview: exit %d\n%s", code, errOut)
	}
	var report struct {
		Policies []struct {
			Policy struct {
				Type   string `json:"policy-type"`
				Domain string `json:"policy-domain"`
			} `json:"policy"`
			Summary struct {
				Success int `json:"total-successful-session-count"`
				Failure int `json:"total-failure-session-count"`
			} `json:"summary"`
			Failures []struct {
				ResultType string `json:"result-type"`
				Count      int    `json:"failed-session-count"`
				MX         string `json:"receiving-mx-hostname"`
			} `json:"failure-details"`
		} `json:"policies"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(report.Policies) != 1 || report.Policies[0].Policy.Type != "sts" || report.Policies[0].Summary.Failure != 1 ||
		len(report.Policies[0].Failures) != 1 || report.Policies[0].Failures[0].ResultType != "certificate-host-mismatch" ||
		report.Policies[0].Failures[0].MX != "mx.testing.example" {
		t.Errorf("the report to testing.example: %s", out)
	}
	// A server token cannot see it, nor learn that it exists.
	if _, errOut, code := runPostern(t, dir, []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + token}, "tlsrpt", "preview", "-domain", "testing.example"); code == 0 {
		t.Errorf("a server token got the report")
	} else if !strings.Contains(errOut, "401") && !strings.Contains(errOut, "No such endpoint") && !strings.Contains(errOut, "token") {
		t.Errorf("a server token: %s", errOut)
	}

	metrics := fetch(t, "http://"+metricsAddr+"/metrics")
	for _, want := range []string{
		`postern_delivery_tls_total{policy="mta-sts",result="success"} 1`,
		`postern_delivery_tls_total{policy="mta-sts",result="failure"} 1`,
		`postern_delivery_tls_total{policy="dane",result="success"} 1`,
		`postern_delivery_tls_total{policy="opportunistic",result="failure"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	p.stop(t)

	// The policy server goes down, and sts.example's MX loses STARTTLS
	// (an attacker on the path). The record announces a new id, so the
	// policy is fetched again, and that fails: the cached policy, in the
	// store across the restart, still holds.
	ps.srv.Close()
	dns.SetTXT("_mta-sts.sts.example", "v=STSv1; id=2;")
	strippedSTS := mxPeer(t, dns, "mx.sts.example", netip.MustParseAddr("127.0.0.5"), port, nil)
	p = startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	addr, apiURL = p.listening(t, "smtp"), "http://"+p.listening(t, "api")
	d = attempted("sts.example")
	if ev := d.MessageEvents[0]; ev.Type != "Transient" || strippedSTS.Received() != 0 {
		t.Errorf("cached enforce policy, policy server down: %+v; %d sent in plaintext", ev, strippedSTS.Received())
	}
	p.stop(t)
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestDANESkippedWithARemoteResolver: a resolver not on loopback could
// have its AD bit forged on the way, so DANE is skipped; the log says why,
// once, and the node is ready all the same.
func TestDANESkippedWithARemoteResolver(t *testing.T) {
	dir := t.TempDir()
	initialized(t, dir)
	p := startPostern(t, dir, []string{"POSTERN_DNS=192.0.2.53"}, "serve", "-smtp-addr", "127.0.0.1:0")
	metricsAddr := p.listening(t, "metrics")
	stack.WaitFor(t, "readyz to answer 200", func() bool {
		resp, err := http.Get("http://" + metricsAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	p.stop(t)
	logs := p.stderr.String()
	if n := strings.Count(logs, "DANE is skipped"); n != 1 || !strings.Contains(logs, "dns=192.0.2.53") {
		t.Errorf("the log says %d times that DANE is skipped, want once, naming the resolver:\n%s", n, logs)
	}
}
