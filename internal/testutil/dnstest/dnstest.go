// Package dnstest runs a real DNS server on the loopback interface for
// tests, so that delivery code resolves names through the same resolver
// code paths it uses in production, only pointed at 127.0.0.1.
//
// The server answers over UDP and TCP from records the test sets. It is
// authoritative for every name it knows: unknown names get NXDOMAIN, known
// names without records of the asked type get an empty answer (NODATA).
// Answers too big for the client's UDP buffer come back truncated, so the
// client retries over TCP as it would on the Internet.
package dnstest

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string
	Pref uint16
}

// Query is one question the server received.
type Query struct {
	Name    string // lower case, without the trailing dot
	Type    string // "MX", "A", "AAAA", "TXT", ...
	Network string // "udp" or "tcp"
}

// Server is a DNS server on 127.0.0.1. Its methods are safe for
// concurrent use, also while it answers queries.
type Server struct {
	t   testing.TB
	udp net.PacketConn
	tcp net.Listener

	mu       sync.Mutex
	names    map[string]*records // by canonical name, see canonical
	signed   map[string]bool     // zones whose answers carry the AD bit
	queries  []Query
	tcpConns map[net.Conn]struct{}

	wg sync.WaitGroup // every goroutine the server started
}

type records struct {
	byType map[dnsmessage.Type][]dnsmessage.ResourceBody
	rcode  dnsmessage.RCode // a failure to answer with instead of records
}

// typeTLSA is the TLSA record type (RFC 6698), which dnsmessage does not
// name.
const typeTLSA dnsmessage.Type = 52

// udpDefaultSize is the largest UDP answer a client without EDNS0 accepts
// (RFC 1035 §4.2.1).
const udpDefaultSize = 512

// New starts a server on 127.0.0.1 with a random port, the same for UDP
// and TCP. It stops when the test ends, and the test fails if a client
// left a TCP connection open or a server goroutine does not stop.
func New(t testing.TB) *Server {
	t.Helper()
	var (
		udp net.PacketConn
		tcp net.Listener
		err error
	)
	// The UDP port is picked first; TCP on the same number may be taken by
	// something else, so try a few times.
	for range 10 {
		udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		tcp, err = net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			break
		}
		udp.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: listen tcp: %v", err)
	}
	s := &Server{
		t:        t,
		udp:      udp,
		tcp:      tcp,
		names:    make(map[string]*records),
		signed:   make(map[string]bool),
		tcpConns: make(map[net.Conn]struct{}),
	}
	s.wg.Add(2)
	go s.serveUDP()
	go s.serveTCP()
	t.Cleanup(s.close)
	return s
}

// Addr is the server's address, "127.0.0.1:port", for both UDP and TCP.
func (s *Server) Addr() string { return s.udp.LocalAddr().String() }

// SetMX replaces the MX records of domain.
func (s *Server) SetMX(domain string, mxs []MX) {
	bodies := make([]dnsmessage.ResourceBody, len(mxs))
	for i, mx := range mxs {
		bodies[i] = &dnsmessage.MXResource{Pref: mx.Pref, MX: s.name(mx.Host)}
	}
	s.set(domain, dnsmessage.TypeMX, bodies)
}

// SetNullMX publishes RFC 7505's null MX for domain: one MX record with
// preference 0 and host ".", saying the domain accepts no mail.
func (s *Server) SetNullMX(domain string) {
	s.set(domain, dnsmessage.TypeMX, []dnsmessage.ResourceBody{
		&dnsmessage.MXResource{Pref: 0, MX: s.name(".")},
	})
}

// SetA replaces the A records of host.
func (s *Server) SetA(host string, addrs ...netip.Addr) {
	bodies := make([]dnsmessage.ResourceBody, len(addrs))
	for i, a := range addrs {
		if !a.Is4() {
			s.t.Fatalf("dnstest: SetA(%q): %v is not an IPv4 address", host, a)
		}
		bodies[i] = &dnsmessage.AResource{A: a.As4()}
	}
	s.set(host, dnsmessage.TypeA, bodies)
}

// SetAAAA replaces the AAAA records of host.
func (s *Server) SetAAAA(host string, addrs ...netip.Addr) {
	bodies := make([]dnsmessage.ResourceBody, len(addrs))
	for i, a := range addrs {
		if !a.Is6() || a.Is4In6() {
			s.t.Fatalf("dnstest: SetAAAA(%q): %v is not an IPv6 address", host, a)
		}
		bodies[i] = &dnsmessage.AAAAResource{AAAA: a.As16()}
	}
	s.set(host, dnsmessage.TypeAAAA, bodies)
}

// SetTXT replaces the TXT records of name, one record per value. A value
// longer than 255 bytes is split into several character-strings of one
// record, as DKIM keys are published (RFC 6376 §3.6.2.2).
func (s *Server) SetTXT(name string, values ...string) {
	bodies := make([]dnsmessage.ResourceBody, len(values))
	for i, v := range values {
		bodies[i] = &dnsmessage.TXTResource{TXT: splitCharacterStrings(v)}
	}
	s.set(name, dnsmessage.TypeTXT, bodies)
}

// SetCNAME makes name an alias of target.
func (s *Server) SetCNAME(name, target string) {
	s.set(name, dnsmessage.TypeCNAME, []dnsmessage.ResourceBody{&dnsmessage.CNAMEResource{CNAME: s.name(target)}})
}

// TLSA is one TLSA record (RFC 6698).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte
}

// SetTLSA replaces the TLSA records of name ("_25._tcp.mx.example").
// With none, the name exists without TLSA records.
func (s *Server) SetTLSA(name string, recs ...TLSA) {
	bodies := make([]dnsmessage.ResourceBody, len(recs))
	for i, r := range recs {
		bodies[i] = &dnsmessage.UnknownResource{Type: typeTLSA, Data: append([]byte{r.Usage, r.Selector, r.MatchingType}, r.Data...)}
	}
	s.set(name, typeTLSA, bodies)
}

// SetSigned marks zone as signed: answers about the zone and the names
// under it carry the AD bit when the query asks for DNSSEC (DO or AD), as
// a validating resolver's would.
func (s *Server) SetSigned(zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signed[canonical(zone)] = true
}

func (s *Server) signedLocked(name string) bool {
	for n := name; n != ""; {
		if s.signed[n] {
			return true
		}
		_, rest, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		n = rest
	}
	return false
}

// SetServFail makes every question about name fail with SERVFAIL, the
// answer of a server that cannot resolve it right now.
func (s *Server) SetServFail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordsLocked(name).rcode = dnsmessage.RCodeServerFailure
}

// Queries returns the questions received so far, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

func splitCharacterStrings(v string) []string {
	const max = 255
	parts := make([]string, 0, len(v)/max+1)
	for len(v) > max {
		parts = append(parts, v[:max])
		v = v[max:]
	}
	return append(parts, v)
}

// canonical is the form names are kept and compared in: lower case with
// the trailing dot, as dnsmessage writes them.
func canonical(name string) string {
	name = strings.ToLower(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

func (s *Server) name(name string) dnsmessage.Name {
	n, err := dnsmessage.NewName(canonical(name))
	if err != nil {
		s.t.Fatalf("dnstest: bad name %q: %v", name, err)
	}
	return n
}

func (s *Server) set(name string, typ dnsmessage.Type, bodies []dnsmessage.ResourceBody) {
	s.name(name) // validates
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordsLocked(name).byType[typ] = bodies
}

func (s *Server) recordsLocked(name string) *records {
	key := canonical(name)
	r := s.names[key]
	if r == nil {
		r = &records{byType: make(map[dnsmessage.Type][]dnsmessage.ResourceBody)}
		s.names[key] = r
	}
	return r
}

// answer builds the reply to one request. It returns nil for requests not
// worth answering (unparsable, or not a query).
func (s *Server) answer(req []byte, network string, udpLimit int) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(req); err != nil || q.Header.Response || len(q.Questions) != 1 {
		return nil
	}
	question := q.Questions[0]
	name := strings.ToLower(question.Name.String())

	resp := dnsmessage.Message{
		Header: dnsmessage.Header{
			ID:                 q.Header.ID,
			Response:           true,
			Authoritative:      true,
			RecursionDesired:   q.Header.RecursionDesired,
			RecursionAvailable: true,
		},
		Questions: q.Questions,
	}

	s.mu.Lock()
	s.queries = append(s.queries, Query{
		Name:    strings.TrimSuffix(name, "."),
		Type:    typeName(question.Type),
		Network: network,
	})
	recs, known := s.names[name]
	if s.signedLocked(name) && (q.Header.AuthenticData || doBit(q)) {
		resp.Header.AuthenticData = true
	}
	switch {
	case !known:
		resp.Header.RCode = dnsmessage.RCodeNameError
	case recs.rcode != dnsmessage.RCodeSuccess:
		resp.Header.RCode = recs.rcode
	default:
		for _, body := range recs.byType[question.Type] {
			resp.Answers = append(resp.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{
					Name:  question.Name,
					Type:  question.Type,
					Class: dnsmessage.ClassINET,
					TTL:   60,
				},
				Body: body,
			})
		}
	}
	s.mu.Unlock()

	if network == "udp" {
		for _, add := range q.Additionals {
			if add.Header.Type == dnsmessage.TypeOPT {
				// EDNS0 keeps the client's UDP buffer size in the class.
				udpLimit = max(udpLimit, int(add.Header.Class))
			}
		}
	}
	out, err := resp.Pack()
	if err != nil {
		s.t.Errorf("dnstest: pack answer for %s: %v", name, err)
		return nil
	}
	if network == "udp" && len(out) > udpLimit {
		resp.Header.Truncated = true
		resp.Answers = nil
		if out, err = resp.Pack(); err != nil {
			s.t.Errorf("dnstest: pack truncated answer for %s: %v", name, err)
			return nil
		}
	}
	return out
}

func typeName(t dnsmessage.Type) string {
	if t == typeTLSA {
		return "TLSA"
	}
	return strings.TrimPrefix(t.String(), "Type")
}

// doBit reports whether the query asks for DNSSEC records (the DO bit
// of its EDNS0 OPT record, RFC 3225).
func doBit(q dnsmessage.Message) bool {
	for _, add := range q.Additionals {
		if add.Header.Type == dnsmessage.TypeOPT && add.Header.TTL&(1<<15) != 0 {
			return true
		}
	}
	return false
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return // closed
		}
		if out := s.answer(buf[:n], "udp", udpDefaultSize); out != nil {
			s.udp.WriteTo(out, from)
		}
	}
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.tcpConns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveTCPConn(c)
	}
}

// serveTCPConn answers the length-prefixed queries of one connection
// (RFC 1035 §4.2.2) until the client hangs up.
func (s *Server) serveTCPConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.tcpConns, c)
		s.mu.Unlock()
		c.Close()
	}()
	for {
		var size [2]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint16(size[:]))
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		out := s.answer(req, "tcp", 0)
		if out == nil {
			return
		}
		if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(out)))); err != nil {
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// close stops the server. Clients have had the whole test to hang up, and
// get a moment more; a TCP connection still open after that is a leak.
func (s *Server) close() {
	s.udp.Close()
	s.tcp.Close()

	deadline := time.Now().Add(2 * time.Second)
	for {
		s.mu.Lock()
		open := len(s.tcpConns)
		if open == 0 || time.Now().After(deadline) {
			for c := range s.tcpConns {
				c.Close()
			}
			s.mu.Unlock()
			if open > 0 {
				s.t.Errorf("dnstest: %d TCP connection(s) still open at the end of the test", open)
			}
			break
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}

	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.t.Errorf("dnstest: server goroutines did not stop")
	}
}
