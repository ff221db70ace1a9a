// Package dmarc is what Postern does with DMARC for its customers'
// domains: the record to publish, the address reports go to, the reports
// received (kept, parsed or not), who sends as each domain according to
// them, and when to tighten the policy.
package dmarc

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	msgdmarc "github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/postern/postern/internal/dmarcreport"
	"github.com/postern/postern/store"
)

// LocalPrefix starts the local part of report addresses:
// dmarc+<token>@<inbound-domain>.
const LocalPrefix = "dmarc+"

// Token names a domain in its report address, signed with the
// installation's key so that nobody can file reports for another
// domain by guessing its ID.
func Token(key []byte, domainID int64) string {
	id := strconv.FormatInt(domainID, 10)
	return id + "-" + mac(key, id)
}

func mac(key []byte, id string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("dmarc-report-address:" + id))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil)[:10]))
}

// ParseToken reads a token back to its domain ID.
func ParseToken(key []byte, token string) (int64, bool) {
	id, sig, ok := strings.Cut(strings.ToLower(token), "-")
	n, err := strconv.ParseInt(id, 10, 64)
	if !ok || err != nil || n <= 0 || !hmac.Equal([]byte(sig), []byte(mac(key, id))) {
		return 0, false
	}
	return n, true
}

// Address is where a domain's reports go.
func Address(key []byte, domainID int64, inboundDomain string) string {
	return LocalPrefix + Token(key, domainID) + "@" + inboundDomain
}

// Record is the _dmarc TXT record to publish for a domain: p=none to
// begin with, reports to Postern.
func Record(key []byte, domainID int64, inboundDomain string) string {
	return "v=DMARC1; p=none; rua=mailto:" + Address(key, domainID, inboundDomain)
}

// ExternalAuthorization is RFC 7489 §7.1's record: the report domain
// (inbound-domain) agrees to take reports about domain.
func ExternalAuthorization(domain, inboundDomain string) (name, value string) {
	return domain + "._report._dmarc." + inboundDomain, "v=DMARC1"
}

// Store is what ingesting and reading reports needs of the store.
type Store interface {
	AddDMARCReport(r store.DMARCReport, received []byte) (store.DMARCReport, error)
	DMARCParsedReports(domainID int64, from, to time.Time) ([]store.DMARCReport, error)
	DMARCKnownSources(domainID int64) (map[string]bool, error)
}

// ErrWrongDomain: the report is about another domain than the one its
// address belongs to; it is kept as failed.
var ErrWrongDomain = errors.New("the report is about another domain")

// Ingest reads what a receiver sent about domain and files it: parsed,
// or failed with the reason (kept, never dropped). The error is the
// reason a report was not counted: unreadable, about another domain,
// or store.ErrDuplicateReport; a failure of the store too.
func Ingest(st Store, domain store.Domain, received []byte, via string, now time.Time) (store.DMARCReport, error) {
	r := store.DMARCReport{DomainID: domain.ID, Via: via, ReceivedAt: now.UTC(), Status: store.DMARCFailed}
	report, _, err := dmarcreport.Read(received)
	if err == nil && report.Policy.Domain != domain.Name {
		err = fmt.Errorf("%w: it is about %s, and this address takes reports about %s", ErrWrongDomain, report.Policy.Domain, domain.Name)
	}
	if err == nil {
		r.Status = store.DMARCParsed
	}
	if report.OrgName != "" {
		r.OrgName, r.ExternalID, r.Begin, r.End = report.OrgName, report.ReportID, report.Begin, report.End
	}
	if err != nil {
		r.Error = err.Error()
		filed, serr := st.AddDMARCReport(r, received)
		if serr != nil {
			return filed, serr
		}
		return filed, err
	}
	r.Messages = report.Messages()
	for _, rec := range report.Records {
		row := store.DMARCRow{SourceIP: rec.SourceIP.String(), Count: rec.Count, Disposition: rec.Disposition,
			DKIM: rec.DKIM, SPF: rec.SPF, HeaderFrom: rec.HeaderFrom}
		for _, d := range rec.DKIMResults {
			if d.Result == "pass" && d.Domain == domain.Name && d.Selector != "" {
				row.DKIMPassSelectors = append(row.DKIMPassSelectors, d.Selector)
			}
		}
		r.Rows = append(r.Rows, row)
	}
	return st.AddDMARCReport(r, received)
}

// Source is one address that sent as the domain, over a period.
type Source struct {
	IP           string
	Hostname     string // its PTR, "" if none
	Organization string // the PTR's registrable domain
	Messages     int64
	DmarcPass    int64
	SpfAligned   int64
	DkimAligned  int64
	Dispositions map[string]int64 // none, quarantine, reject
	ViaPostern   bool
	Known        bool
	FirstSeen    time.Time
	LastSeen     time.Time
}

// Sources sums reports into sources, most messages first. selectors are
// the DKIM selectors Postern holds for the domain; sendingIPs are
// Postern's own addresses (sending-ips); ptr names an address ("" when
// it has no name).
func Sources(reports []store.DMARCReport, known map[string]bool, selectors []string, sendingIPs []netip.Addr, ptr func(ip string) string) (total, pass int64, out []Source) {
	byIP := map[string]*Source{}
	for _, r := range reports {
		for _, row := range r.Rows {
			s := byIP[row.SourceIP]
			if s == nil {
				s = &Source{IP: row.SourceIP, Dispositions: map[string]int64{"none": 0, "quarantine": 0, "reject": 0}, FirstSeen: r.Begin, LastSeen: r.End, Known: known[row.SourceIP]}
				byIP[row.SourceIP] = s
			}
			s.Messages += row.Count
			total += row.Count
			if row.DKIM == "pass" || row.SPF == "pass" {
				s.DmarcPass += row.Count
				pass += row.Count
			}
			if row.SPF == "pass" {
				s.SpfAligned += row.Count
			}
			if row.DKIM == "pass" {
				s.DkimAligned += row.Count
			}
			if _, ok := s.Dispositions[row.Disposition]; ok {
				s.Dispositions[row.Disposition] += row.Count
			}
			for _, sel := range row.DKIMPassSelectors {
				s.ViaPostern = s.ViaPostern || slices.Contains(selectors, sel)
			}
			if r.Begin.Before(s.FirstSeen) {
				s.FirstSeen = r.Begin
			}
			if r.End.After(s.LastSeen) {
				s.LastSeen = r.End
			}
		}
	}
	for _, s := range byIP {
		if ip, err := netip.ParseAddr(s.IP); err == nil && slices.Contains(sendingIPs, ip) {
			s.ViaPostern = true
		}
		if ptr != nil {
			s.Hostname = ptr(s.IP)
			if s.Hostname != "" {
				s.Organization, _ = publicsuffix.EffectiveTLDPlusOne(s.Hostname)
			}
		}
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Source) int {
		if a.Messages != b.Messages {
			return int(b.Messages - a.Messages)
		}
		return strings.Compare(a.IP, b.IP)
	})
	return total, pass, out
}

// Advice says whether to tighten the domain's policy, and why, from the
// last 30 days' reports.
type Advice struct {
	Current   string // the published p=, "" when none was found
	Next      string // the policy to move to; "" to stay
	Reason    string
	PassShare float64 // the share of messages that passed DMARC, 0 to 1
	Unknown   int     // sources not via Postern and not marked known
}

// Advise decides the advice: move from none to quarantine, and from
// quarantine to reject, once 98% of a meaningful volume passed and no
// unknown source sends as the domain.
func Advise(current string, total, pass int64, sources []Source) Advice {
	a := Advice{Current: current}
	if total > 0 {
		a.PassShare = float64(pass) / float64(total)
	}
	for _, s := range sources {
		if !s.ViaPostern && !s.Known {
			a.Unknown++
		}
	}
	next := map[string]string{"": "none", "none": "quarantine", "quarantine": "reject"}[current]
	switch {
	case current == "":
		a.Next, a.Reason = "none", "No DMARC record was found: publish the record with p=none to start receiving reports."
	case current == "reject":
		a.Reason = "p=reject is the strongest policy: keep it."
	case total < 100:
		a.Reason = fmt.Sprintf("Only %d messages were reported in the last 30 days: wait for more before changing the policy.", total)
	case a.Unknown > 0:
		a.Reason = fmt.Sprintf("%d sources that are neither Postern nor marked known send as the domain: check them, and mark the legitimate ones known, before moving to p=%s.", a.Unknown, next)
	case a.PassShare < 0.98:
		a.Reason = fmt.Sprintf("%.1f%% of the last 30 days' messages passed DMARC: reach 98%% before moving to p=%s.", a.PassShare*100, next)
	default:
		a.Next = next
		a.Reason = fmt.Sprintf("%.1f%% of the last 30 days' %d messages passed DMARC, and every source is known: move to p=%s.", a.PassShare*100, total, next)
	}
	return a
}

// TXTResolver looks TXT records up; *relay.Resolver is one.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Published is the DMARC record a domain publishes, read with
// go-msgauth's dmarc package.
type Published struct {
	Record string   // the TXT record as published
	Policy string   // p=
	RUA    []string // the aggregate report URIs
}

// LookupPublished finds domain's record; ok is false when it has none.
func LookupPublished(ctx context.Context, r TXTResolver, domain string) (Published, bool) {
	txts, _ := r.LookupTXT(ctx, "_dmarc."+domain)
	for _, txt := range txts {
		if !strings.HasPrefix(txt, "v=DMARC1") {
			continue
		}
		p := Published{Record: txt}
		if rec, err := msgdmarc.Parse(txt); err == nil {
			p.Policy, p.RUA = string(rec.Policy), rec.ReportURIAggregate
		}
		return p, true
	}
	return Published{}, false
}
