// Package tlsrpt makes SMTP TLS reports (RFC 8460): the daily summary,
// for each recipient domain that asks for it in its _smtp._tls record,
// of the TLS sessions Postern had with its servers, sent by mail or
// HTTPS.
package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"

	"github.com/postern/postern/internal/tagrecord"
	"github.com/postern/postern/store"
)

// Record is a domain's _smtp._tls TXT record (RFC 8460 §3).
type Record struct {
	RUA []string // where reports go: mailto: and https: URIs
}

// ErrNoRecord says a domain publishes no usable TLS-RPT record.
var ErrNoRecord = errors.New("no TLS-RPT record")

// ParseRecord reads "v=TLSRPTv1; rua=mailto:a@example.com,https://…".
// URIs of other schemes are left out; at least one must remain.
func ParseRecord(txt string) (Record, error) {
	fields, err := tagrecord.Parse(txt, "TLSRPTv1")
	if err != nil {
		return Record{}, fmt.Errorf("TLS-RPT record: %w", err)
	}
	var rec Record
	for _, f := range fields {
		if f.Key != "rua" {
			continue
		}
		for _, u := range strings.Split(f.Value, ",") {
			u = strings.Trim(u, " \t")
			parsed, err := url.Parse(u)
			switch {
			case err != nil:
			case parsed.Scheme == "mailto" && strings.Contains(parsed.Opaque, "@"),
				parsed.Scheme == "https" && parsed.Host != "":
				rec.RUA = append(rec.RUA, u)
			}
		}
	}
	if len(rec.RUA) == 0 {
		return Record{}, errors.New("TLS-RPT record: no mailto: or https: rua")
	}
	return rec, nil
}

// FindRecord picks the TLS-RPT record among a name's TXT records: exactly
// one must start with "v=TLSRPTv1".
func FindRecord(txts []string) (Record, error) {
	txt, err := tagrecord.Find(txts, "TLSRPTv1")
	if err != nil {
		return Record{}, fmt.Errorf("%w: %v", ErrNoRecord, err)
	}
	return ParseRecord(txt)
}

// Report is RFC 8460's JSON report (§4.4).
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the report's period.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyResult is the sessions held to one policy.
type PolicyResult struct {
	Policy         PolicyDesc      `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// PolicyDesc names the policy.
type PolicyDesc struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

// Summary counts sessions.
type Summary struct {
	TotalSuccessful int64 `json:"total-successful-session-count"`
	TotalFailure    int64 `json:"total-failure-session-count"`
}

// FailureDetail counts sessions that failed the same way.
type FailureDetail struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64  `json:"failed-session-count"`
	FailureReasonCode   string `json:"failure-reason-code,omitempty"`
}

// Build makes the report of one day's counts to one domain. submitter is
// Postern's host name: it names the organisation and makes the report ID.
func Build(day store.TLSReportDay, submitter string) Report {
	r := Report{
		OrganizationName: submitter,
		DateRange:        DateRange{Start: day.Day.UTC(), End: day.Day.UTC().Add(24*time.Hour - time.Second)},
		ContactInfo:      "postmaster@" + submitter,
		// The same report sent again (after a failure) has the same ID,
		// so the receiver can tell.
		ReportID: fmt.Sprintf("%s.%s@%s", day.Day.UTC().Format(time.DateOnly), day.Domain, submitter),
		Policies: []PolicyResult{},
	}
	for _, p := range day.Policies {
		pr := PolicyResult{
			Policy:  PolicyDesc{Type: p.Type, String: p.Strings, Domain: day.Domain, MXHost: p.MXHosts},
			Summary: Summary{TotalSuccessful: p.Success, TotalFailure: p.Failure},
		}
		for _, f := range p.Failures {
			pr.FailureDetails = append(pr.FailureDetails, FailureDetail{
				ResultType: f.ResultType, SendingMTAIP: f.SendingIP, ReceivingMXHostname: f.ReceivingMX,
				ReceivingIP: f.ReceivingIP, FailedSessionCount: f.Count, FailureReasonCode: f.Reason,
			})
		}
		r.Policies = append(r.Policies, pr)
	}
	return r
}

// Gzip is the report as JSON, gzipped, as it is sent.
func (r Report) Gzip() ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := json.NewEncoder(zw)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// filename is RFC 8460 §5.3's: submitter!policy-domain!begin!end!id.json.gz.
func (r Report) filename(domain string) string {
	return fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", r.OrganizationName, domain,
		r.DateRange.Start.Unix(), r.DateRange.End.Add(time.Second).Unix(), r.DateRange.Start.Format("20060102"))
}

// Message is the report as mail (RFC 8460 §5.3): multipart/report with
// report-type tlsrpt, a few words for people, and the gzipped JSON as
// application/tlsrpt+gzip. The message ID and date come from the caller.
func Message(r Report, domain, from, to, messageID string, now time.Time) ([]byte, error) {
	gz, err := r.Gzip()
	if err != nil {
		return nil, err
	}
	var h gomessage.Header
	h.Set("From", from)
	h.Set("To", to)
	h.Set("Subject", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, r.OrganizationName, r.ReportID))
	h.Set("Date", now.UTC().Format(time.RFC1123Z))
	h.Set("Message-ID", "<"+messageID+">")
	h.Set("MIME-Version", "1.0")
	h.Set("TLS-Report-Domain", domain)
	h.Set("TLS-Report-Submitter", r.OrganizationName)
	h.SetContentType("multipart/report", map[string]string{"report-type": "tlsrpt"})

	var buf bytes.Buffer
	w, err := gomessage.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	var text gomessage.Header
	text.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	tw, err := w.CreatePart(text)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(tw, "This is the SMTP TLS report (RFC 8460) for %s from %s, for %s UTC.\r\n",
		domain, r.OrganizationName, r.DateRange.Start.Format(time.DateOnly))
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var att gomessage.Header
	att.SetContentType("application/tlsrpt+gzip", nil)
	att.Set("Content-Transfer-Encoding", "base64")
	att.SetContentDisposition("attachment", map[string]string{"filename": r.filename(domain)})
	aw, err := w.CreatePart(att)
	if err != nil {
		return nil, err
	}
	if _, err := aw.Write(gz); err != nil {
		return nil, err
	}
	if err := aw.Close(); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
