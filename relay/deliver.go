package relay

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/dane"
	"github.com/postern/postern/internal/mtasts"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/store"
)

// Envelope is the SMTP envelope of one delivery: a sender and recipients
// who share a destination.
type Envelope struct {
	From string   // the return path; empty for the null sender
	To   []string // at least one
	// SMTPUTF8 says the addresses or header fields are not ASCII
	// (RFC 6531). A server that does not offer SMTPUTF8 cannot take such
	// a message, which then bounces. (8-bit bodies need no flag: go-smtp
	// declares BODY=8BITMIME whenever the server offers it, and sends the
	// body as it is otherwise, as Postfix does by default.)
	SMTPUTF8 bool
}

// Message is what is sent after DATA: Prefix, the DKIM-Signature fields
// from Signer.Sign (or nothing), then Raw, the message as stored. They
// stay apart so that signing never copies the message.
type Message struct {
	Prefix []byte
	Raw    []byte
}

// Size is the number of bytes sent, as declared with SIZE.
func (m Message) Size() int { return len(m.Prefix) + len(m.Raw) }

// RecipientResult is what one delivery attempt did for one recipient.
type RecipientResult struct {
	Address string
	// Reply is the server's reply for this recipient: to RCPT if it was
	// refused there, else to MAIL or to the end of DATA. For a refusal
	// Postern decided itself (size, SMTPUTF8) it is composed in the same
	// form; Code is 0 when no server answered.
	Reply Reply
	Classification
}

// Result is the outcome of one delivery attempt of a message to one
// destination. It always holds one RecipientResult per recipient of the
// envelope, in order.
type Result struct {
	Recipients []RecipientResult
	Host       string     // the server of the attempt: an MX host or the smarthost; empty if none was reached
	IP         netip.Addr // its address, if it was reached
	TLS        TLSInfo    // what protected the session
	// TLSError is the failure of STARTTLS on Host that led to the
	// plaintext session of this result (MXConfig.TLSFallback).
	TLSError string
	// TLSSessions are the new sessions of this attempt, and the servers
	// a policy refused, for TLS reports: none when a kept session was
	// reused.
	TLSSessions []TLSSession
}

// HostError is a failure to use one server at all: it could not be
// reached, it refused the session at greeting, EHLO, STARTTLS or AUTH, or
// TLS could not be set up. No transaction began, so another server may be
// tried, and no recipient bounces because of it.
type HostError struct {
	Host string // the server's name
	Addr string // the address dialed; empty if the name did not resolve
	Err  error
}

func (e *HostError) Error() string {
	if e.Addr == "" {
		return fmt.Sprintf("%s: %v", e.Host, e.Err)
	}
	return fmt.Sprintf("%s [%s]: %v", e.Host, e.Addr, e.Err)
}

func (e *HostError) Unwrap() error { return e.Err }

// ClientConfig is what MX and smarthost delivery share.
type ClientConfig struct {
	// Hostname is the name Postern gives in EHLO. Required.
	Hostname string
	// ConnectTimeout bounds dialing; 30 s if zero.
	ConnectTimeout time.Duration
	// CommandTimeout bounds the wait for each reply and the TLS
	// handshake; 5 min if zero (RFC 5321 §4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds sending the message and the wait for the reply
	// to its end; 10 min if zero (RFC 5321 §4.5.3.2).
	DataTimeout time.Duration
	// DialContext opens connections; a net.Dialer's if nil.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReuseTimeout, if positive, keeps a session open that long after a
	// message, for the next message to the same destination (recipient
	// domain, or the smarthost), as Postfix's connection cache does: the
	// messages after the first skip the DNS lookups, the connection, the
	// greeting, TLS and EHLO. A kept session that turns out closed is
	// replaced by a new one, without a verdict on the message. Zero: every
	// message has its own session. CloseIdle ends the kept sessions.
	ReuseTimeout time.Duration
	// ReuseLimit caps the messages sent over one session; 100 if zero.
	ReuseLimit int
}

// MXResolver is what MX delivery asks of DNS; *Resolver is one. LookupMX
// returns at least one MX or an error, and classifies as Resolver does.
type MXResolver interface {
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// MXConfig configures delivery to the mail exchangers of each domain.
type MXConfig struct {
	ClientConfig
	// Resolver finds mail exchangers and their addresses. Required.
	Resolver MXResolver
	// Port is the SMTP port of mail exchangers; 25 if zero.
	Port int
	// MaxAddresses bounds the servers tried for one message; 5 if zero,
	// as Postfix's smtp_mx_address_limit.
	MaxAddresses int
	// TLSFallback: when STARTTLS is offered but fails (handshake error,
	// refused STARTTLS), connect to the same server again once and send
	// in plaintext, as Postal does, instead of moving on to the next
	// server. STARTTLS is always tried when offered; certificates are not
	// verified, as Postfix's "may" level: unverified TLS still defeats
	// passive eavesdropping (RFC 7435), and many MX certificates would
	// not verify.
	TLSFallback bool
	// AllowPrivate lets delivery connect to loopback, private, link-local
	// and other non-public addresses (see package privateaddr), whether
	// an MX answer or an address literal names them. Off, such a
	// destination bounces, naming the address: a tenant must not make
	// Postern open SMTP to this machine or its private networks. Tests
	// that deliver to 127.0.0.1 turn it on.
	AllowPrivate bool

	// STS, if set, holds delivery to recipient domains' MTA-STS policies
	// (RFC 8461): in enforce mode, only MX hosts the policy lists, over
	// TLS 1.2 or later with a certificate valid for the MX name, and
	// never plaintext; in testing mode, failures are reported only.
	STS *STSPolicies
	// DANE, if set, holds delivery to MX hosts' DNSSEC-validated TLSA
	// records (RFC 7672), which take precedence over MTA-STS.
	DANE TLSAResolver
	// RootCAs verify MX certificates; the system's (SSL_CERT_FILE) if
	// nil.
	RootCAs *x509.CertPool
}

// SmarthostConfig configures delivery of everything through one
// upstream server. TLS is required and the certificate verified.
type SmarthostConfig struct {
	ClientConfig
	// Addr is the upstream's "host:port". Required.
	Addr string
	// ImplicitTLS speaks TLS from the first byte (port 465) instead of
	// requiring STARTTLS.
	ImplicitTLS bool
	// Username and Password, if Username is set, authenticate with AUTH
	// PLAIN (over TLS only).
	Username, Password string
	// RootCAs verify the upstream's certificate; the system's if nil.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any certificate. For tests.
	InsecureSkipVerify bool
}

// MXDeliverer delivers to the mail exchangers of recipient domains. It
// is safe for concurrent use.
type MXDeliverer struct {
	client       client
	resolver     MXResolver
	port         uint16
	maxAddresses int
	tlsFallback  bool
	allowPrivate bool
	sts          *STSPolicies
	dane         TLSAResolver
	roots        *x509.CertPool
}

// NewMXDeliverer checks cfg and fills in its defaults.
func NewMXDeliverer(cfg MXConfig) (*MXDeliverer, error) {
	c, err := newClient(cfg.ClientConfig)
	if err != nil {
		return nil, err
	}
	if cfg.Resolver == nil {
		return nil, errors.New("relay: MX delivery needs a resolver")
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("relay: MX port %d out of range", cfg.Port)
	}
	if cfg.MaxAddresses == 0 {
		cfg.MaxAddresses = 5
	}
	return &MXDeliverer{
		client:       c,
		resolver:     cfg.Resolver,
		port:         uint16(cfg.Port),
		maxAddresses: cfg.MaxAddresses,
		tlsFallback:  cfg.TLSFallback,
		allowPrivate: cfg.AllowPrivate,
		sts:          cfg.STS,
		dane:         cfg.DANE,
		roots:        cfg.RootCAs,
	}, nil
}

// DeliverDomain delivers msg to the recipients of env, who are all at
// domain. An address literal (see privateaddr.AddressLiteral) is delivered to that
// address, at the MX port, without DNS. Otherwise it tries the domain's
// mail exchangers in order of preference, each at each of its addresses,
// until one takes up the transaction; a server that cannot be used
// (HostError: refused connection, 421 greeting, failed TLS) passes the
// turn to the next. Whatever the server that took the transaction
// replied is final for this attempt.
//
// A null MX or a domain that does not exist bounces every recipient
// (DnsError); when no server could be used, every recipient is
// Transient. The error, if any, says why no server answered.
func (d *MXDeliverer) DeliverDomain(ctx context.Context, domain string, env Envelope, msg Message) (Result, error) {
	key := strings.ToLower(strings.TrimSuffix(domain, "."))
	if res, ok := d.client.reuse(ctx, key, env, msg); ok {
		return res, nil
	}
	if ip, ok := privateaddr.AddressLiteral(key); ok {
		// No DNS: the address is given (RFC 5321 §4.1.3). Anyone who can
		// send could as well point a domain's MX at that address, which
		// is why both are held to the same rule.
		if !d.allowPrivate && privateaddr.Is(ip) {
			return failed(Result{}, env, Reply{Text: privateRefusal(key, []netip.Addr{ip})}, privateBounce), nil
		}
		return d.deliver(ctx, env, msg, ip.String(), netip.AddrPortFrom(ip, d.port), key, opportunistic)
	}
	mxs, err := d.resolver.LookupMX(ctx, domain)
	if err != nil {
		return failed(Result{}, env, Reply{Text: err.Error()}, ClassifyError(err)), err
	}
	sts := stsFound{}
	if d.sts != nil {
		sts = d.sts.Lookup(ctx, key)
	}
	var (
		hostErrs   []error
		sessions   []TLSSession // for the TLS report
		tried      int
		unresolved int          // MX hosts whose names do not exist
		private    []netip.Addr // addresses refused as private
		public     int          // addresses that may be used
	)
	if sts.failure != nil {
		sessions = append(sessions, TLSSession{Policy: sts.ref(), Failure: sts.failure, Effective: PolicyMTASTS})
	}
	withSessions := func(res Result) Result {
		res.TLSSessions = append(sessions, res.TLSSessions...)
		return res
	}
servers:
	for _, mx := range mxs {
		hp, session, err := d.hostPolicy(ctx, sts, mx.Host)
		if session != nil {
			sessions = append(sessions, *session)
		}
		if err != nil {
			hostErrs = append(hostErrs, &HostError{Host: mx.Host, Err: err})
			continue
		}
		ips, err := d.resolver.LookupIP(ctx, mx.Host)
		if err != nil {
			if isNotFound(err) {
				unresolved++
			}
			hostErrs = append(hostErrs, &HostError{Host: mx.Host, Err: err})
			continue
		}
		// The check is on the addresses DNS gave, just before they are
		// used, so a name that answers public first and private later
		// (DNS rebinding) gains nothing.
		if !d.allowPrivate {
			kept := ips[:0:0]
			for _, ip := range ips {
				if privateaddr.Is(ip) {
					private = append(private, ip)
				} else {
					kept = append(kept, ip)
				}
			}
			ips = kept
		}
		public += len(ips)
		for _, ip := range ips {
			if tried == d.maxAddresses || ctx.Err() != nil {
				break servers
			}
			tried++
			res, err := d.deliver(ctx, env, msg, mx.Host, netip.AddrPortFrom(ip, d.port), key, hp)
			if err == nil {
				return withSessions(res), nil
			}
			sessions = append(sessions, res.TLSSessions...)
			hostErrs = append(hostErrs, err)
		}
	}
	err = errors.Join(hostErrs...)
	texts := make([]string, len(hostErrs))
	for i, e := range hostErrs {
		texts[i] = e.Error()
	}
	if len(private) > 0 && public == 0 && len(hostErrs) == 0 {
		// Every address of every mail exchanger is private: no retry
		// will change that.
		return failed(Result{}, env, Reply{Text: privateRefusal(domain, private)}, privateBounce), nil
	}
	verdict := Classification{Outcome: Transient}
	if unresolved == len(mxs) {
		// Not one mail exchanger exists: as good as no domain.
		verdict = Classification{Outcome: Bounced, Bounce: BounceDNSError}
	}
	return withSessions(failed(Result{}, env, Reply{Text: strings.Join(texts, "; ")}, verdict)), err
}

// opportunistic is the policy of a server nothing demands TLS of.
var opportunistic = hostPolicy{policy: PolicyOpportunistic, ref: store.TLSPolicyRef{Type: store.TLSPolicyNotFound}}

// hostPolicy decides what delivery demands of the MX host: DANE when its
// TLSA records are DNSSEC-validated and usable, else the domain's
// MTA-STS policy, else nothing. The error refuses the host (an MTA-STS
// policy in enforce mode that does not list it, or a TLSA lookup that
// failed for a signed host); session is what the TLS report counts of
// that decision, if anything.
func (d *MXDeliverer) hostPolicy(ctx context.Context, sts stsFound, host string) (hostPolicy, *TLSSession, error) {
	if d.dane != nil {
		// The name is that of port 25 whatever port delivery uses: the
		// mx-port setting only moves tests to a high port.
		ans, err := d.dane.LookupTLSA(ctx, host, 25)
		if err != nil {
			secure, serr := d.dane.Secure(ctx, host)
			if serr != nil || secure {
				// A signed host whose TLSA records cannot be had: they
				// may be hidden on purpose (RFC 7672 §2.2.2).
				ref := store.TLSPolicyRef{Type: store.TLSPolicyTLSA}
				err = &policyError{resultType: resultDNSSECInvalid, err: fmt.Errorf("DANE: the TLSA lookup for the DNSSEC-signed host failed: %w", err)}
				return hostPolicy{}, &TLSSession{Policy: ref, Failure: &store.TLSFailure{ResultType: resultDNSSECInvalid, ReceivingMX: host, Reason: err.Error()}, Effective: PolicyDANE}, err
			}
		} else if usable := ans.Usable(); ans.Secure && len(usable) > 0 {
			ref := store.TLSPolicyRef{Type: store.TLSPolicyTLSA}
			for _, r := range ans.Records {
				ref.Strings = append(ref.Strings, r.String())
			}
			return hostPolicy{policy: PolicyDANE, tlsa: usable, ref: ref}, nil, nil
		}
	}
	if sts.policy == nil {
		hp := opportunistic
		hp.ref = sts.ref()
		return hp, nil, nil
	}
	hp := hostPolicy{policy: PolicyMTASTS, ref: sts.ref(), testing: sts.policy.Mode == mtasts.ModeTesting}
	if !sts.policy.MatchMX(host) {
		err := fmt.Errorf("MTA-STS: %s is not an MX host that the domain's policy (mode %s) lists: %s", host, sts.policy.Mode, strings.Join(sts.policy.MX, ", "))
		session := &TLSSession{Policy: hp.ref, Failure: &store.TLSFailure{ResultType: resultValidationFailure, ReceivingMX: host, Reason: err.Error()}, Effective: PolicyMTASTS}
		if hp.testing {
			hp.policy = PolicyOpportunistic
			return hp, session, nil
		}
		return hostPolicy{}, session, &policyError{resultType: resultValidationFailure, err: err}
	}
	if hp.testing {
		hp.policy = PolicyOpportunistic
	}
	return hp, nil, nil
}

// privateBounce is the verdict for a destination at a private address.
var privateBounce = Classification{Outcome: Bounced, Bounce: BounceBlocked}

// privateRefusal says why a destination was refused, naming its
// addresses.
func privateRefusal(domain string, addrs []netip.Addr) string {
	names := make([]string, len(addrs))
	for i, a := range addrs {
		names[i] = a.String()
	}
	return fmt.Sprintf("%s is at %s, a loopback, private or link-local address: Postern does not deliver there unless allow-private-destinations is set",
		domain, strings.Join(names, ", "))
}

// Deliver runs one SMTP session with the server host at addr. The error
// is a *HostError when the server could not be used; the recipients then
// carry its Transient classification.
func (d *MXDeliverer) Deliver(ctx context.Context, env Envelope, msg Message, host string, addr netip.AddrPort) (Result, error) {
	return d.deliver(ctx, env, msg, host, addr, "", opportunistic)
}

// CloseIdle ends the sessions kept for reuse (ClientConfig.ReuseTimeout).
func (d *MXDeliverer) CloseIdle() { d.client.pool.closeAll() }

// deliver is Deliver; a session fit for another message is kept under
// key, unless key is empty.
func (d *MXDeliverer) deliver(ctx context.Context, env Envelope, msg Message, host string, addr netip.AddrPort, key string, hp hostPolicy) (Result, error) {
	r := route{
		host:   host,
		addr:   addr.String(),
		tls:    tlsOpportunistic,
		policy: hp,
		roots:  d.roots,
		tlsConfig: &tls.Config{
			ServerName:         host,
			InsecureSkipVerify: true, // see MXConfig.TLSFallback; verified after the handshake, for the record
		},
	}
	switch hp.policy {
	case PolicyMTASTS:
		r.tls = tlsRequired
		r.tlsConfig = &tls.Config{ServerName: host, RootCAs: d.roots, MinVersion: tls.VersionTLS12}
	case PolicyDANE:
		r.tls = tlsRequired
		r.tlsConfig = &tls.Config{
			ServerName:         host,
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // the TLSA records decide, in VerifyConnection
			VerifyConnection: func(cs tls.ConnectionState) error {
				return dane.Verify(hp.tlsa, cs.PeerCertificates, []string{host}, time.Now())
			},
		}
	}
	res, err := d.client.transact(ctx, r, env, msg, key, "")
	var tlsErr *tlsFailure
	if err != nil && r.tls == tlsOpportunistic && d.tlsFallback && errors.As(err, &tlsErr) && ctx.Err() == nil {
		sessions := res.TLSSessions
		r.tls = tlsNone
		res, err = d.client.transact(ctx, r, env, msg, key, tlsErr.Error())
		res.TLSSessions = append(sessions, res.TLSSessions...)
	}
	return res, err
}

// Smarthost delivers everything through one upstream server. It is safe
// for concurrent use.
type Smarthost struct {
	client client
	route  route
}

// NewSmarthost checks cfg and fills in its defaults.
func NewSmarthost(cfg SmarthostConfig) (*Smarthost, error) {
	c, err := newClient(cfg.ClientConfig)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("relay: smarthost address %q: %w", cfg.Addr, err)
	}
	r := route{
		host: host,
		addr: cfg.Addr,
		tls:  tlsRequired,
		tlsConfig: &tls.Config{
			ServerName:         host,
			RootCAs:            cfg.RootCAs,
			InsecureSkipVerify: cfg.InsecureSkipVerify,
		},
	}
	if cfg.ImplicitTLS {
		r.tls = tlsImplicit
	}
	if cfg.Username != "" {
		r.auth = &credentials{username: cfg.Username, password: cfg.Password}
	}
	return &Smarthost{client: c, route: r}, nil
}

// Deliver runs one SMTP session with the smarthost. The error is a
// *HostError when the smarthost could not be used (unreachable, no TLS,
// AUTH refused); the recipients are then Transient.
func (s *Smarthost) Deliver(ctx context.Context, env Envelope, msg Message) (Result, error) {
	if res, ok := s.client.reuse(ctx, smarthostKey, env, msg); ok {
		return res, nil
	}
	return s.client.transact(ctx, s.route, env, msg, smarthostKey, "")
}

// CloseIdle ends the sessions kept for reuse (ClientConfig.ReuseTimeout).
func (s *Smarthost) CloseIdle() { s.client.pool.closeAll() }

const smarthostKey = "[smarthost]"

type tlsMode int

const (
	tlsOpportunistic tlsMode = iota // STARTTLS if offered
	tlsNone                         // plaintext, after STARTTLS failed with this server
	tlsRequired                     // STARTTLS, or no session
	tlsImplicit                     // TLS from the first byte
)

// route is one server to talk to and what to demand of it.
type route struct {
	host      string // its name: for TLS, and for the result
	addr      string // where to dial
	tls       tlsMode
	tlsConfig *tls.Config
	auth      *credentials // nil: no AUTH
	// policy is the MX host's TLS policy, for the record and the TLS
	// report; zero for the smarthost, whose TLS is configured.
	policy hostPolicy
	roots  *x509.CertPool // verify an opportunistic session for the record
}

type credentials struct {
	username, password string
}

// tlsFailure marks a HostError caused by TLS, after which a plaintext
// session may be tried.
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return "STARTTLS: " + e.err.Error() }
func (e *tlsFailure) Unwrap() error { return e.err }

// client is the configured SMTP client side.
type client struct {
	cfg  ClientConfig
	pool *sessionPool // nil: no reuse
}

func newClient(cfg ClientConfig) (client, error) {
	if cfg.Hostname == "" || strings.ContainsAny(cfg.Hostname, " \t\r\n") {
		return client{}, fmt.Errorf("relay: EHLO hostname %q is not a host name", cfg.Hostname)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 5 * time.Minute
	}
	if cfg.DataTimeout == 0 {
		cfg.DataTimeout = 10 * time.Minute
	}
	if cfg.DialContext == nil {
		var d net.Dialer
		cfg.DialContext = d.DialContext
	}
	c := client{cfg: cfg}
	if cfg.ReuseTimeout > 0 {
		if cfg.ReuseLimit <= 0 {
			cfg.ReuseLimit = 100
		}
		c.pool = &sessionPool{timeout: cfg.ReuseTimeout, limit: cfg.ReuseLimit, idle: map[string][]*session{}}
	}
	return c, nil
}

// failed gives every recipient of env the same reply and verdict.
func failed(res Result, env Envelope, reply Reply, verdict Classification) Result {
	res.Recipients = make([]RecipientResult, len(env.To))
	for i, to := range env.To {
		res.Recipients[i] = RecipientResult{Address: to, Reply: reply, Classification: verdict}
	}
	return res
}

// transact runs one session with one server: connect, greet, secure,
// authenticate, then one mail transaction. The error is a *HostError if
// the transaction could not begin. A session fit for another message is
// kept under key (unless key is empty or reuse is off); tlsError is the
// TLS failure that led to this plaintext session, if any.
func (c client) transact(ctx context.Context, r route, env Envelope, msg Message, key, tlsError string) (Result, error) {
	res := Result{Host: r.host, TLSError: tlsError}
	hostFailed := func(err error) (Result, error) {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		hostErr := &HostError{Host: r.host, Addr: r.addr, Err: err}
		return failed(res, env, Reply{Text: hostErr.Error()}, ClassifyError(hostErr)), hostErr
	}

	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	conn, err := c.cfg.DialContext(dialCtx, "tcp", r.addr)
	cancel()
	if err != nil {
		return hostFailed(err)
	}
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		res.IP = ap.Addr().Unmap()
	}
	// go-smtp knows no contexts: closing the connection ends whatever it
	// is waiting for.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, info, verifyErr, err := c.open(ctx, conn, r)
	stop()
	sessions := r.tlsSessions(conn, info, verifyErr, err)
	if err != nil {
		conn.Close()
		res.TLSSessions = sessions
		if p := r.policy.policy; p == PolicyMTASTS || p == PolicyDANE {
			res.TLS = TLSInfo{Policy: p} // what the server failed
		}
		return hostFailed(err)
	}
	s := &session{key: key, conn: conn, sc: sc, host: r.host, ip: res.IP, tls: info, tlsError: tlsError}
	res, _ = c.send(ctx, s, env, msg, false)
	res.TLSSessions = sessions
	return res, nil
}

// tlsSessions is what the TLS report counts of a session's setup: its
// success or failure under the route's policy. verifyErr is why an
// opportunistic session's certificate did not verify. A setup that
// failed before TLS (greeting, EHLO), the plaintext retry after a failed
// STARTTLS, and the smarthost are not counted.
func (r route) tlsSessions(conn net.Conn, info TLSInfo, verifyErr, err error) []TLSSession {
	if r.policy.policy == "" || r.tls == tlsNone {
		return nil
	}
	var failure *store.TLSFailure
	var tlsErr *tlsFailure
	var policyErr *policyError
	switch {
	case errors.As(err, &tlsErr) || errors.As(err, &policyErr):
		failure = &store.TLSFailure{ResultType: tlsFailureType(err), Reason: err.Error()}
	case err != nil:
		return nil
	case info.Version == 0:
		failure = &store.TLSFailure{ResultType: resultSTARTTLSNotSupported, Reason: "the server does not offer STARTTLS"}
	case r.policy.testing && verifyErr != nil:
		failure = &store.TLSFailure{ResultType: tlsFailureType(verifyErr), Reason: verifyErr.Error()}
	}
	s := TLSSession{Policy: r.policy.ref, Effective: info.Policy}
	if failure != nil {
		failure.ReceivingMX = r.host
		if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
			failure.ReceivingIP = ap.Addr().Unmap().String()
		}
		if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
			failure.SendingIP = ap.Addr().Unmap().String()
		}
		s.Failure = failure
		if r.policy.ref.Type != store.TLSPolicyNotFound {
			s.Effective = r.policy.policy // the policy the server failed
		}
	}
	return []TLSSession{s}
}

// reuse sends msg over a session kept for key, if there is one that
// still works.
func (c client) reuse(ctx context.Context, key string, env Envelope, msg Message) (Result, bool) {
	for {
		s := c.pool.get(key)
		if s == nil {
			return Result{}, false
		}
		if res, stale := c.send(ctx, s, env, msg, true); !stale {
			return res, true
		}
	}
}

// send runs one mail transaction on an open session, then keeps the
// session for the next message or ends it. stale says that a reused
// session was found closed (or closing, 421) at MAIL: nothing was sent,
// and the result is to be ignored.
func (c client) send(ctx context.Context, s *session, env Envelope, msg Message, reused bool) (res Result, stale bool) {
	res = Result{Host: s.host, IP: s.ip, TLS: s.tls, TLSError: s.tlsError}
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	t := transaction{ctx: ctx, conn: s.conn, sc: s.sc, timeout: c.cfg.DataTimeout, host: s.host, clean: true}
	res.Recipients = t.run(env, msg)
	interrupted := !stop()
	s.uses++
	switch {
	case reused && t.mailDropped && ctx.Err() == nil:
		s.conn.Close()
		return res, true
	case !t.clean || interrupted:
		s.conn.Close()
	case c.pool == nil || s.key == "" || s.uses >= c.pool.limit:
		s.quit()
	default:
		s.conn.SetDeadline(time.Time{})
		if t.inTransaction {
			// MAIL was accepted but the transaction did not end with
			// the reply to the message: RSET before the next MAIL. It
			// ends with ctx, as the transaction does: otherwise only
			// command-timeout would bound a silent server's RSET, and
			// a shutdown would wait for it.
			stopReset := context.AfterFunc(ctx, func() { s.conn.Close() })
			err := s.sc.Reset()
			if !stopReset() || err != nil {
				s.conn.Close()
				return res, false
			}
		}
		c.pool.put(s)
	}
	return res, false
}

// open greets the server, sets up TLS as r demands and authenticates,
// and returns the client ready for MAIL and what protects the session;
// verifyErr is why the certificate of an opportunistic session did not
// verify, if it did not.
func (c client) open(ctx context.Context, conn net.Conn, r route) (sc *smtp.Client, info TLSInfo, verifyErr, err error) {
	info = TLSInfo{Policy: PolicyNone}
	secured := func(tlsConn *tls.Conn) {
		cs := tlsConn.ConnectionState()
		info.Version, info.Cipher = cs.Version, cs.CipherSuite
		switch {
		case r.policy.policy == PolicyMTASTS || r.policy.policy == PolicyDANE:
			// The handshake verified it, or failed.
			info.Policy, info.Verified = r.policy.policy, true
		case r.policy.policy != "":
			info.Policy = PolicyOpportunistic
			verifyErr = webPKIVerify(cs, r.host, r.roots)
			info.Verified = verifyErr == nil
		default: // the smarthost: verified unless told not to
			info.Policy, info.Verified = PolicyOpportunistic, !r.tlsConfig.InsecureSkipVerify
		}
	}
	if r.tls == tlsImplicit {
		tlsConn, err := c.handshake(ctx, conn, r.tlsConfig)
		if err != nil {
			return nil, info, nil, err
		}
		secured(tlsConn)
		conn = tlsConn
	}
	sc = c.smtpClient(conn)
	if err := sc.Hello(c.cfg.Hostname); err != nil {
		return nil, info, nil, fmt.Errorf("greeting and EHLO: %w", err)
	}

	if r.tls == tlsOpportunistic || r.tls == tlsRequired {
		offered, _ := sc.Extension("STARTTLS")
		switch {
		case offered:
			tlsConn, err := c.startTLS(ctx, conn, r.tlsConfig)
			if err != nil {
				return nil, info, nil, &tlsFailure{err}
			}
			secured(tlsConn)
			sc = c.smtpClient(&afterSTARTTLS{Conn: tlsConn, greeting: strings.NewReader("220 TLS ready\r\n")})
			if err := sc.Hello(c.cfg.Hostname); err != nil {
				return nil, info, nil, fmt.Errorf("EHLO after STARTTLS: %w", err)
			}
		case r.tls == tlsRequired && r.policy.policy != "":
			return nil, info, nil, &policyError{resultType: resultSTARTTLSNotSupported,
				err: fmt.Errorf("the server does not offer STARTTLS, and its %s policy requires TLS: not sending in plaintext", r.policy.policy)}
		case r.tls == tlsRequired:
			return nil, info, nil, errors.New("the server does not offer STARTTLS, and TLS is required")
		}
	}

	if r.auth != nil {
		if !sc.SupportsAuth(sasl.Plain) {
			return nil, info, nil, errors.New("the server does not offer AUTH PLAIN")
		}
		if err := sc.Auth(sasl.NewPlainClient("", r.auth.username, r.auth.password)); err != nil {
			return nil, info, nil, fmt.Errorf("AUTH: %w", err)
		}
	}
	return sc, info, verifyErr, nil
}

func (c client) smtpClient(conn net.Conn) *smtp.Client {
	sc := smtp.NewClient(&boundedConn{Conn: conn})
	sc.CommandTimeout = c.cfg.CommandTimeout
	sc.SubmissionTimeout = c.cfg.DataTimeout
	return sc
}

// startTLS sends STARTTLS and sets up TLS on conn. go-smtp v0.25 offers
// no STARTTLS on a client that has already said EHLO with our name, so
// the command is sent here; the server sends nothing after its 220 until
// the client's TLS hello, so reading that line directly cannot steal
// bytes from go-smtp's buffer.
func (c client) startTLS(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	conn.SetDeadline(time.Now().Add(c.cfg.CommandTimeout))
	defer conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "STARTTLS\r\n"); err != nil {
		return nil, err
	}
	if _, _, err := textproto.NewReader(bufio.NewReaderSize(&boundedConn{Conn: conn}, 512)).ReadResponse(220); err != nil {
		return nil, err
	}
	return c.handshake(ctx, conn, cfg)
}

func (c client) handshake(ctx context.Context, conn net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
	defer cancel()
	tlsConn := tls.Client(conn, cfg)
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tlsConn, nil
}

// afterSTARTTLS hands go-smtp's client the 220 greeting it waits for at
// the start of a connection: after STARTTLS the server sends none
// (RFC 3207 §4.2), the client just says EHLO again.
type afterSTARTTLS struct {
	net.Conn
	greeting io.Reader
}

func (c *afterSTARTTLS) Read(p []byte) (int, error) {
	if n, _ := c.greeting.Read(p); n > 0 {
		return n, nil
	}
	return c.Conn.Read(p)
}

// transaction is one mail transaction on an open session.
type transaction struct {
	ctx     context.Context
	conn    net.Conn // the connection under sc, for the DATA deadline
	sc      *smtp.Client
	timeout time.Duration // for sending the message
	host    string
	// clean is true while the session is in a known state, fit for QUIT:
	// after a network failure or timeout it only gets closed.
	clean bool
	// inTransaction: MAIL was accepted and no reply to the message came
	// (no recipient accepted, or DATA refused).
	inTransaction bool
	// mailDropped: the session broke at MAIL, or the server answered it
	// with 421 (closing): on a reused session, the server had hung up.
	mailDropped bool
}

// run sends MAIL, RCPT for each recipient and, if any was accepted, the
// message; it returns the verdict on each recipient.
func (t *transaction) run(env Envelope, msg Message) []RecipientResult {
	results := make([]RecipientResult, len(env.To))
	for i, to := range env.To {
		results[i].Address = to
	}
	setAll := func(indexes []int, reply Reply, verdict Classification) {
		for _, i := range indexes {
			results[i].Reply, results[i].Classification = reply, verdict
		}
	}
	all := make([]int, len(env.To))
	for i := range all {
		all[i] = i
	}

	// Refusals decided before MAIL: sending would only earn a 5xx later.
	if env.SMTPUTF8 {
		if ok, _ := t.sc.Extension("SMTPUTF8"); !ok {
			reply := Reply{Code: 553, Enhanced: EnhancedCode{5, 6, 7}, Text: fmt.Sprintf(
				"%s does not support SMTPUTF8, which the non-ASCII addresses or header fields of this message need", t.host)}
			setAll(all, reply, ClassifyReply(reply))
			return results
		}
	}
	size := msg.Size()
	if limit, ok := t.sc.MaxMessageSize(); ok && limit > 0 && size > limit {
		reply := Reply{Code: 552, Enhanced: EnhancedCode{5, 3, 4}, Text: fmt.Sprintf(
			"the message of %d bytes exceeds the limit of %d bytes that %s announces", size, limit, t.host)}
		setAll(all, reply, ClassifyReply(reply))
		return results
	}

	if err := t.sc.Mail(env.From, &smtp.MailOptions{Size: int64(size), UTF8: env.SMTPUTF8}); err != nil {
		reply, verdict := t.failure(err)
		t.mailDropped = !t.clean || reply.Code == 421
		setAll(all, reply, verdict)
		return results
	}
	t.inTransaction = true
	var accepted []int
	for i, to := range env.To {
		err := t.sc.Rcpt(to, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		reply, verdict := t.failure(err)
		if !t.clean {
			// The session is gone: the rest get its failure too.
			setAll(all[i:], reply, verdict)
			setAll(accepted, reply, verdict)
			return results
		}
		setAll([]int{i}, reply, verdict)
	}
	if len(accepted) == 0 {
		return results
	}

	reply, verdict := t.data(msg)
	setAll(accepted, reply, verdict)
	return results
}

// data sends the message and returns the reply to its end.
func (t *transaction) data(msg Message) (Reply, Classification) {
	w, err := t.sc.Data()
	if err != nil {
		return t.failure(err)
	}
	// go-smtp bounds only the waits for replies; a server that stops
	// reading must not hold the writes forever either. The deadline
	// also covers the reply, for which go-smtp sets its own.
	t.conn.SetDeadline(time.Now().Add(t.timeout))
	for _, part := range [][]byte{msg.Prefix, msg.Raw} {
		if _, err := w.Write(part); err != nil {
			return t.failure(err)
		}
	}
	resp, err := w.CloseWithResponse()
	t.inTransaction = false // the reply ends the transaction, whatever it is
	if err != nil {
		return t.failure(err)
	}
	reply := Reply{Code: 250, Text: resp.StatusText}
	reply.Enhanced, reply.Text = splitEnhancedCode(resp.StatusText)
	return reply, ClassifyReply(reply)
}

// failure turns an error of go-smtp into a reply and its verdict. An
// error that is not a reply means the session broke.
func (t *transaction) failure(err error) (Reply, Classification) {
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		reply := replyOf(smtpErr)
		return reply, ClassifyReply(reply)
	}
	t.clean = false
	if t.ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", context.Cause(t.ctx), err)
	}
	return Reply{Text: fmt.Sprintf("%s: %v", t.host, err)}, ClassifyError(err)
}

// splitEnhancedCode separates an RFC 2034 enhanced code from the start of
// a reply text, which go-smtp leaves in place for success replies.
func splitEnhancedCode(text string) (EnhancedCode, string) {
	first, rest, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return EnhancedCode{}, text
	}
	var code EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return EnhancedCode{}, text
		}
		code[i] = n
	}
	return code, rest
}

// Bounds on what a server may send as one reply. RFC 5321 §4.5.3.1.5
// allows reply lines of 512 octets; these leave room for servers that
// exceed it. go-smtp reads replies with net/textproto, which bounds
// neither a line nor a multi-line reply: a server sending one endless
// line would grow the client's buffer until the command timeout.
const (
	maxReplyLine  = 16 << 10
	maxReplyBytes = 256 << 10
)

// errReplyTooLong ends a session whose server sent a reply past the
// bounds; the delivery is then Transient, as for a broken connection.
var errReplyTooLong = fmt.Errorf("the server's reply exceeds %d bytes in a line or %d in all", maxReplyLine, maxReplyBytes)

// boundedConn fails reads once the server has sent a line longer than
// maxReplyLine, or more than maxReplyBytes since the client last wrote
// (one reply, or the replies to one pipelined group of commands). The
// SMTP client reads and writes in turn, never at once.
type boundedConn struct {
	net.Conn
	line, reply int
	err         error
}

func (c *boundedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.Conn.Read(p)
	for _, b := range p[:n] {
		c.line++
		if b == '\n' {
			c.line = 0
		}
		if c.line > maxReplyLine {
			c.err = errReplyTooLong
		}
	}
	if c.reply += n; c.reply > maxReplyBytes {
		c.err = errReplyTooLong
	}
	if c.err != nil {
		return 0, c.err
	}
	return n, err
}

func (c *boundedConn) Write(p []byte) (int, error) {
	c.reply = 0
	return c.Conn.Write(p)
}
