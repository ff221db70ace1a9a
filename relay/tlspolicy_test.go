package relay_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/internal/dane"
	"github.com/postern/postern/internal/mtasts"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/testca"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// tlsWorld is dest.example on loopback: its DNS, its MX host
// mx.dest.example (a go-smtp peer), its MTA-STS policy server, and a
// certificate authority the deliverer trusts.
type tlsWorld struct {
	t      *testing.T
	dns    *dnstest.Server
	ca     *testca.CA
	cache  *bolt.Store
	policy string // served by the policy server; "" answers 404
	stsSrv *httptest.Server
}

func newTLSWorld(t *testing.T) *tlsWorld {
	w := &tlsWorld{t: t, dns: dnstest.New(t), ca: testca.New(t)}
	w.dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	w.dns.SetA("mx.dest.example", loopback1)
	w.dns.SetA("mta-sts.dest.example", loopback1)
	var err error
	w.cache, err = bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cache.Close() })
	w.stsSrv = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.policy == "" || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		rw.Write([]byte(w.policy))
	}))
	w.stsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{w.ca.Issue("mta-sts.dest.example")}}
	w.stsSrv.StartTLS()
	t.Cleanup(w.stsSrv.Close)
	return w
}

// publishSTS publishes an MTA-STS record with id and serves policy.
func (w *tlsWorld) publishSTS(id, mode string, mx ...string) {
	w.dns.SetTXT("_mta-sts.dest.example", "v=STSv1; id="+id+";")
	w.policy = "version: STSv1\r\nmode: " + mode + "\r\n"
	for _, m := range mx {
		w.policy += "mx: " + m + "\r\n"
	}
	w.policy += "max_age: 86400\r\n"
}

// peer starts mx.dest.example with a certificate for names, or without
// STARTTLS if there are none.
func (w *tlsWorld) peer(names ...string) (*smtptest.Peer, tls.Certificate) {
	var opts smtptest.Options
	var cert tls.Certificate
	if len(names) > 0 {
		cert = w.ca.Issue(names...)
		opts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	return smtptest.New(w.t, opts), cert
}

// deliverer delivers to port with MTA-STS and DANE, trusting the test CA.
func (w *tlsWorld) deliverer(port int, withDANE bool) *relay.MXDeliverer {
	resolver := relay.NewResolver(w.dns.Addr())
	dialer := &privateaddr.Dialer{Resolve: resolver.LookupIP, AllowPrivate: true}
	client := mtasts.NewClient(dialer.DialContext)
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: w.ca.Pool()}
	_, stsPort, _ := net.SplitHostPort(w.stsSrv.Listener.Addr().String())
	p, _ := strconv.Atoi(stsPort)
	cfg := relay.MXConfig{
		ClientConfig: relay.ClientConfig{Hostname: ehloName},
		Resolver:     resolver,
		Port:         port,
		AllowPrivate: true,
		TLSFallback:  true,
		RootCAs:      w.ca.Pool(),
		STS:          relay.NewSTSPolicies(w.cache, resolver, &mtasts.Fetcher{Client: client, Port: p}, nil, nil),
	}
	if withDANE {
		r, err := dane.NewResolver(w.dns.Addr())
		if err != nil {
			w.t.Fatal(err)
		}
		cfg.DANE = r
	}
	d, err := relay.NewMXDeliverer(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *tlsWorld) deliver(d *relay.MXDeliverer) relay.Result {
	w.t.Helper()
	res, _ := d.DeliverDomain(context.Background(), "dest.example", relay.Envelope{From: "app@example.com", To: []string{"rcpt@dest.example"}}, testMsg)
	if len(res.Recipients) != 1 {
		w.t.Fatalf("results %+v", res.Recipients)
	}
	return res
}

// failures lists the TLS report's failure types of a result's sessions.
func failures(res relay.Result) []string {
	var out []string
	for _, s := range res.TLSSessions {
		if s.Failure != nil {
			out = append(out, s.Failure.ResultType)
		}
	}
	return out
}

func TestMTASTSEnforce(t *testing.T) {
	t.Run("matching MX and a good certificate: delivered over verified TLS", func(t *testing.T) {
		w := newTLSWorld(t)
		w.publishSTS("1", "enforce", "mx.dest.example")
		peer, _ := w.peer("mx.dest.example")
		res := w.deliver(w.deliverer(peer.Port(), false))
		if r := res.Recipients[0]; r.Outcome != relay.Delivered {
			t.Fatalf("outcome %v: %s", r.Outcome, r.Reply)
		}
		if res.TLS.Policy != relay.PolicyMTASTS || !res.TLS.Verified || res.TLS.Version < tls.VersionTLS12 || res.TLS.Cipher == 0 {
			t.Errorf("TLS %+v, want mta-sts, verified, TLS 1.2+", res.TLS)
		}
		if len(res.TLSSessions) != 1 || res.TLSSessions[0].Failure != nil || res.TLSSessions[0].Policy.Type != store.TLSPolicySTS {
			t.Errorf("TLS report sessions %+v, want one sts success", res.TLSSessions)
		}
		if m := peer.Messages(); len(m) != 1 || m[0].TLSVersion == 0 {
			t.Errorf("the peer got %d messages, TLS %v", len(m), m)
		}
		// The policy is cached in the store under its id.
		if p, err := w.cache.STSPolicy("dest.example"); err != nil || p.ID != "1" || !strings.Contains(p.Text, "mode: enforce") {
			t.Errorf("cached %+v, %v", p, err)
		}
	})

	t.Run("an MX host the policy does not list: nothing sent", func(t *testing.T) {
		w := newTLSWorld(t)
		w.publishSTS("1", "enforce", "mx.elsewhere.example")
		peer, _ := w.peer("mx.dest.example")
		res := w.deliver(w.deliverer(peer.Port(), false))
		r := res.Recipients[0]
		if r.Outcome != relay.Transient || !strings.Contains(r.Reply.Text, "MTA-STS") {
			t.Errorf("outcome %v, reply %q; want Transient naming MTA-STS", r.Outcome, r.Reply.Text)
		}
		if peer.Connections() != 0 {
			t.Errorf("the unlisted MX host got %d connections", peer.Connections())
		}
		if got := failures(res); len(got) != 1 || got[0] != "validation-failure" {
			t.Errorf("report failures %v", got)
		}
	})

	t.Run("a server that stops offering STARTTLS: never plaintext", func(t *testing.T) {
		w := newTLSWorld(t)
		w.publishSTS("1", "enforce", "*.dest.example")
		peer, _ := w.peer() // no STARTTLS, as after an attacker stripped it
		res := w.deliver(w.deliverer(peer.Port(), false))
		r := res.Recipients[0]
		if r.Outcome != relay.Transient || !strings.Contains(r.Reply.Text, "STARTTLS") {
			t.Errorf("outcome %v, reply %q; want Transient", r.Outcome, r.Reply.Text)
		}
		if tr := peer.Transcript(); strings.Contains(tr, "MAIL FROM") || peer.Received() != 0 {
			t.Errorf("the message went in plaintext:\n%s", tr)
		}
		if got := failures(res); len(got) != 1 || got[0] != "starttls-not-supported" {
			t.Errorf("report failures %v", got)
		}
	})

	t.Run("a certificate for another name: no fallback to plaintext", func(t *testing.T) {
		w := newTLSWorld(t)
		w.publishSTS("1", "enforce", "mx.dest.example")
		peer, _ := w.peer("other.example")
		res := w.deliver(w.deliverer(peer.Port(), false))
		if r := res.Recipients[0]; r.Outcome != relay.Transient {
			t.Errorf("outcome %v: %s", r.Outcome, r.Reply)
		}
		if peer.Received() != 0 || peer.Connections() != 1 {
			t.Errorf("peer: %d messages over %d connections; want none over one (no plaintext retry)", peer.Received(), peer.Connections())
		}
		if got := failures(res); len(got) != 1 || got[0] != "certificate-host-mismatch" {
			t.Errorf("report failures %v", got)
		}
	})
}

func TestMTASTSTestingReportsWithoutEnforcing(t *testing.T) {
	w := newTLSWorld(t)
	w.publishSTS("1", "testing", "mx.dest.example")
	peer, _ := w.peer("other.example")
	res := w.deliver(w.deliverer(peer.Port(), false))
	if r := res.Recipients[0]; r.Outcome != relay.Delivered {
		t.Fatalf("outcome %v: %s", r.Outcome, r.Reply)
	}
	if res.TLS.Policy != relay.PolicyOpportunistic || res.TLS.Verified || res.TLS.Version == 0 {
		t.Errorf("TLS %+v, want opportunistic, unverified", res.TLS)
	}
	if got := failures(res); len(got) != 1 || got[0] != "certificate-host-mismatch" {
		t.Errorf("report failures %v, want the mismatch", got)
	}
	if s := res.TLSSessions[0]; s.Policy.Type != store.TLSPolicySTS || !strings.Contains(strings.Join(s.Policy.Strings, "\n"), "mode: testing") {
		t.Errorf("reported under %+v", s.Policy)
	}
}

func TestMTASTSCachedPolicyWhenTheServerIsDown(t *testing.T) {
	w := newTLSWorld(t)
	w.publishSTS("1", "enforce", "mx.dest.example")
	good, _ := w.peer("mx.dest.example")
	if r := w.deliver(w.deliverer(good.Port(), false)).Recipients[0]; r.Outcome != relay.Delivered {
		t.Fatalf("first delivery: %v %s", r.Outcome, r.Reply)
	}
	// The policy server goes down and the record announces a new id: the
	// fetch fails, and the cached policy, not yet expired, still holds.
	w.stsSrv.Close()
	w.dns.SetTXT("_mta-sts.dest.example", "v=STSv1; id=2;")
	stripped, _ := w.peer()
	res := w.deliver(w.deliverer(stripped.Port(), false)) // a new deliverer: nothing in memory
	if r := res.Recipients[0]; r.Outcome != relay.Transient || stripped.Received() != 0 {
		t.Errorf("outcome %v (%s), %d sent in plaintext; want the cached enforce policy to hold", r.Outcome, r.Reply, stripped.Received())
	}
	// Without a cached policy the same would go in plaintext.
	w.cache.PutSTSPolicy(store.STSPolicy{Domain: "dest.example", ID: "0", Text: "x", Expires: time.Now().Add(-time.Hour)})
	res = w.deliver(w.deliverer(stripped.Port(), false))
	if r := res.Recipients[0]; r.Outcome != relay.Delivered || res.TLS.Policy != relay.PolicyNone {
		t.Errorf("no valid cached policy: %v %s, TLS %+v; want delivered in plaintext", r.Outcome, r.Reply, res.TLS)
	}
	if got := failures(res); len(got) < 1 || got[0] != "sts-policy-fetch-error" {
		t.Errorf("report failures %v, want the fetch error", got)
	}
}

// tlsaOf is the 3 1 1 record of a certificate.
func tlsaOf(t *testing.T, cert tls.Certificate) dnstest.TLSA {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return dnstest.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: sum[:]}
}

func TestDANE(t *testing.T) {
	t.Run("a matching 3 1 1 record: delivered under DANE", func(t *testing.T) {
		w := newTLSWorld(t)
		// A certificate no authority vouches for: DANE-EE needs none.
		other := testca.New(t)
		cert := other.Issue("anything.example")
		peer := smtptest.New(t, smtptest.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		w.dns.SetTLSA("_25._tcp.mx.dest.example", tlsaOf(t, cert))
		w.dns.SetSigned("dest.example")
		res := w.deliver(w.deliverer(peer.Port(), true))
		if r := res.Recipients[0]; r.Outcome != relay.Delivered {
			t.Fatalf("outcome %v: %s", r.Outcome, r.Reply)
		}
		if res.TLS.Policy != relay.PolicyDANE || !res.TLS.Verified {
			t.Errorf("TLS %+v, want dane, verified", res.TLS)
		}
		if s := res.TLSSessions; len(s) != 1 || s[0].Policy.Type != store.TLSPolicyTLSA || !strings.HasPrefix(s[0].Policy.Strings[0], "3 1 1 ") {
			t.Errorf("report sessions %+v", s)
		}
	})

	t.Run("a mismatching record: Transient, nothing sent", func(t *testing.T) {
		w := newTLSWorld(t)
		peer, _ := w.peer("mx.dest.example")
		w.dns.SetTLSA("_25._tcp.mx.dest.example", tlsaOf(t, w.ca.Issue("mx.dest.example"))) // another key
		w.dns.SetSigned("dest.example")
		res := w.deliver(w.deliverer(peer.Port(), true))
		if r := res.Recipients[0]; r.Outcome != relay.Transient || peer.Received() != 0 || peer.Connections() != 1 {
			t.Errorf("outcome %v (%s), %d sent over %d connections; want Transient, nothing sent, no retry", r.Outcome, r.Reply, peer.Received(), peer.Connections())
		}
		if got := failures(res); len(got) != 1 || got[0] != "validation-failure" {
			t.Errorf("report failures %v", got)
		}
	})

	t.Run("a TLSA answer without the AD bit: opportunistic", func(t *testing.T) {
		w := newTLSWorld(t)
		peer, _ := w.peer("mx.dest.example")
		w.dns.SetTLSA("_25._tcp.mx.dest.example", tlsaOf(t, w.ca.Issue("mx.dest.example"))) // would not match
		res := w.deliver(w.deliverer(peer.Port(), true))
		if r := res.Recipients[0]; r.Outcome != relay.Delivered || res.TLS.Policy != relay.PolicyOpportunistic {
			t.Errorf("outcome %v (%s), TLS %+v; want delivered, opportunistic", r.Outcome, r.Reply, res.TLS)
		}
		// The certificate is the test CA's, for the MX name: it verifies.
		if !res.TLS.Verified {
			t.Error("the opportunistic session's good certificate is recorded as not verified")
		}
	})

	t.Run("DANE before MTA-STS", func(t *testing.T) {
		w := newTLSWorld(t)
		w.publishSTS("1", "enforce", "mx.elsewhere.example") // would refuse the host
		other := testca.New(t)
		cert := other.Issue("mx.dest.example")
		peer := smtptest.New(t, smtptest.Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		w.dns.SetTLSA("_25._tcp.mx.dest.example", tlsaOf(t, cert))
		w.dns.SetSigned("dest.example")
		res := w.deliver(w.deliverer(peer.Port(), true))
		if r := res.Recipients[0]; r.Outcome != relay.Delivered || res.TLS.Policy != relay.PolicyDANE {
			t.Errorf("outcome %v (%s), TLS %+v; want delivered under DANE", r.Outcome, r.Reply, res.TLS)
		}
	})

	t.Run("a signed host whose TLSA lookup fails: Transient", func(t *testing.T) {
		w := newTLSWorld(t)
		peer, _ := w.peer("mx.dest.example")
		w.dns.SetServFail("_25._tcp.mx.dest.example")
		w.dns.SetSigned("dest.example")
		res := w.deliver(w.deliverer(peer.Port(), true))
		if r := res.Recipients[0]; r.Outcome != relay.Transient || peer.Connections() != 0 {
			t.Errorf("outcome %v (%s), %d connections; want Transient without a connection", r.Outcome, r.Reply, peer.Connections())
		}
	})
}

func TestOpportunisticRecordsTheCertificateCheck(t *testing.T) {
	w := newTLSWorld(t)
	peer, _ := w.peer("other.example")
	res := w.deliver(w.deliverer(peer.Port(), true))
	if r := res.Recipients[0]; r.Outcome != relay.Delivered || res.TLS.Policy != relay.PolicyOpportunistic || res.TLS.Verified {
		t.Errorf("outcome %v, TLS %+v; want delivered, opportunistic, not verified", r.Outcome, res.TLS)
	}
	if s := res.TLSSessions; len(s) != 1 || s[0].Failure != nil || s[0].Policy.Type != store.TLSPolicyNotFound {
		t.Errorf("report sessions %+v, want one no-policy-found success", s)
	}
}
