// Package mtasts reads MTA-STS (RFC 8461): the _mta-sts TXT record that
// announces a policy, the policy a domain serves over HTTPS, and which
// mail exchangers a policy allows.
package mtasts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/postern/postern/internal/tagrecord"
)

// Record is a domain's _mta-sts TXT record (RFC 8461 §3.1).
type Record struct {
	ID string // changes whenever the policy does
}

// ErrNoRecord says a domain publishes no usable _mta-sts record: none, or
// more than one (RFC 8461 §3.1: then the domain has no policy).
var ErrNoRecord = errors.New("no MTA-STS record")

// ParseRecord reads one TXT record: "v=STSv1; id=<1 to 32 letters and
// digits>;" with optional further fields, which are ignored.
func ParseRecord(txt string) (Record, error) {
	fields, err := tagrecord.Parse(txt, "STSv1")
	if err != nil {
		return Record{}, fmt.Errorf("MTA-STS record: %w", err)
	}
	var rec Record
	for _, f := range fields {
		if f.Key == "id" {
			if len(f.Value) < 1 || len(f.Value) > 32 || !alphanumeric(f.Value) {
				return Record{}, fmt.Errorf("MTA-STS record: id %q is not 1 to 32 letters and digits", f.Value)
			}
			rec.ID = f.Value
		}
	}
	if rec.ID == "" {
		return Record{}, errors.New("MTA-STS record: no id")
	}
	return rec, nil
}

// FindRecord picks the MTA-STS record among a name's TXT records: those
// that do not start with "v=STSv1" are someone else's; exactly one must
// remain (RFC 8461 §3.1).
func FindRecord(txts []string) (Record, error) {
	txt, err := tagrecord.Find(txts, "STSv1")
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	return ParseRecord(txt)
}

// Mode is what a policy asks of senders.
type Mode string

const (
	ModeEnforce Mode = "enforce" // deliver only over verified TLS to the listed MX hosts
	ModeTesting Mode = "testing" // deliver as usual, report failures
	ModeNone    Mode = "none"    // no policy
)

// MaxAge bounds a policy's max_age: one year (RFC 8461 §3.2).
const MaxAge = 31557600 * time.Second

// Policy is a parsed policy file (RFC 8461 §3.2).
type Policy struct {
	Mode   Mode
	MX     []string // patterns: a host name, or "*." and a domain for one more label
	MaxAge time.Duration
}

// ParsePolicy reads a policy file: "key: value" lines, CRLF or LF. The
// version must be STSv1; mode and max_age are required, and at least one
// mx unless the mode is none. Unknown keys are ignored.
func ParsePolicy(text string) (Policy, error) {
	var p Policy
	var version, maxAge bool
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 1024), MaxPolicySize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.Trim(line, " \t") == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("MTA-STS policy line %d: no colon", n)
		}
		k, v = strings.Trim(k, " \t"), strings.Trim(v, " \t")
		switch k {
		case "version":
			if v != "STSv1" {
				return Policy{}, fmt.Errorf("MTA-STS policy: version %q, not STSv1", v)
			}
			version = true
		case "mode":
			switch Mode(v) {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = Mode(v)
			default:
				return Policy{}, fmt.Errorf("MTA-STS policy: unknown mode %q", v)
			}
		case "max_age":
			secs, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 10 || time.Duration(secs)*time.Second > MaxAge {
				return Policy{}, fmt.Errorf("MTA-STS policy: max_age %q is not 0 to %d seconds", v, int64(MaxAge/time.Second))
			}
			p.MaxAge, maxAge = time.Duration(secs)*time.Second, true
		case "mx":
			pattern := strings.ToLower(strings.TrimSuffix(v, "."))
			if !validPattern(pattern) {
				return Policy{}, fmt.Errorf("MTA-STS policy: mx %q is not a host name or *.domain", v)
			}
			p.MX = append(p.MX, pattern)
		}
	}
	if err := sc.Err(); err != nil {
		return Policy{}, fmt.Errorf("MTA-STS policy: %w", err)
	}
	switch {
	case !version:
		return Policy{}, errors.New("MTA-STS policy: no version")
	case p.Mode == "":
		return Policy{}, errors.New("MTA-STS policy: no mode")
	case !maxAge:
		return Policy{}, errors.New("MTA-STS policy: no max_age")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return Policy{}, errors.New("MTA-STS policy: no mx")
	}
	return p, nil
}

// MatchMX reports whether the policy allows the MX host: a pattern is the
// name itself, or "*.domain", which stands for exactly one label before
// domain (RFC 8461 §4.1). Names compare without case or trailing dot.
func (p Policy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// Lines are the policy as RFC 8460's policy-string: one entry per line.
func (p Policy) Lines() []string {
	out := []string{"version: STSv1", "mode: " + string(p.Mode)}
	for _, mx := range p.MX {
		out = append(out, "mx: "+mx)
	}
	return append(out, "max_age: "+strconv.FormatInt(int64(p.MaxAge/time.Second), 10))
}

func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if p == "" || len(p) > 253 || strings.Contains(p, "*") {
		return false
	}
	for _, label := range strings.Split(p, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c > 0x7f) {
				return false
			}
		}
	}
	return true
}

func alphanumeric(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Fetch limits (RFC 8461 §3.3 leaves them to the sender; these are
// common ones).
const (
	MaxPolicySize = 64 << 10
	FetchTimeout  = 10 * time.Second
)

// Fetcher gets policies over HTTPS.
type Fetcher struct {
	// Client makes the request. Its transport must verify certificates
	// and should refuse private addresses (see NewClient).
	Client *http.Client
	// Port is the HTTPS port of policy hosts; 443 if zero. Tests serve
	// policies on loopback.
	Port int
}

// NewClient returns the client a Fetcher wants: a transport dialing
// through dial (which resolves and checks addresses), certificates
// verified against the system's roots, no proxy, no redirects (RFC 8461
// §3.3), at most FetchTimeout for the whole request.
func NewClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dial,
			TLSHandshakeTimeout: FetchTimeout,
			DisableKeepAlives:   true,
			MaxIdleConns:        -1,
		},
		Timeout: FetchTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("MTA-STS policy fetch: redirects are not followed (RFC 8461 §3.3)")
		},
	}
}

// URL is where domain's policy is served.
func (f *Fetcher) URL(domain string) string {
	host := "mta-sts." + strings.ToLower(strings.TrimSuffix(domain, "."))
	if f.Port != 0 && f.Port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(f.Port))
	}
	return "https://" + host + "/.well-known/mta-sts.txt"
}

// Fetch gets and parses domain's policy. It returns the policy's text as
// served, for the cache. The answer must be 200, text/plain, and at most
// MaxPolicySize bytes.
func (f *Fetcher) Fetch(ctx context.Context, domain string) (Policy, string, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL(domain), nil)
	if err != nil {
		return Policy{}, "", err
	}
	resp, err := f.Client.Do(req)
	if err != nil {
		return Policy{}, "", &FetchError{Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Policy{}, "", &FetchError{Err: fmt.Errorf("%s answered %s", req.URL, resp.Status)}
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return Policy{}, "", &FetchError{Err: fmt.Errorf("%s is %q, not text/plain", req.URL, resp.Header.Get("Content-Type"))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return Policy{}, "", &FetchError{Err: err}
	}
	if len(body) > MaxPolicySize {
		return Policy{}, "", &FetchError{Err: fmt.Errorf("%s is larger than %d bytes", req.URL, MaxPolicySize)}
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return Policy{}, "", err
	}
	return p, string(body), nil
}

// FetchError is a failure to get a policy, as opposed to a policy that
// cannot be read. TLS-RPT tells them apart (sts-policy-fetch-error,
// sts-policy-invalid).
type FetchError struct{ Err error }

func (e *FetchError) Error() string { return "MTA-STS policy fetch: " + e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }
