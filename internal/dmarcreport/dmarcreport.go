// Package dmarcreport reads DMARC aggregate reports (RFC 7489 Appendix C,
// and the format of RFC 9990) as receivers send them: XML, gzip or zip,
// alone or inside a message, whatever their parts are labelled; and
// refuses, with a reason, what is too large or expands too much.
package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
)

// Limits of what is read.
const (
	// MaxInput bounds a report as received: a message or an upload.
	MaxInput = 15 << 20
	// MaxExpanded bounds a report once decompressed.
	MaxExpanded = 20 << 20
)

// Report is one aggregate report.
type Report struct {
	OrgName   string
	Email     string
	ReportID  string
	Begin     time.Time
	End       time.Time
	Policy    Policy
	Records   []Record
	Generator string `json:",omitempty"`
}

// Policy is the policy the reporter found published.
type Policy struct {
	Domain string
	ADKIM  string `json:",omitempty"`
	ASPF   string `json:",omitempty"`
	P      string
	SP     string `json:",omitempty"`
	Pct    int    `json:",omitempty"`
}

// Record is one row: the messages from one source with one outcome.
type Record struct {
	SourceIP     netip.Addr
	Count        int64
	Disposition  string // none, quarantine, reject (pass in RFC 9990 samples)
	DKIM         string // the DMARC evaluation: pass or fail
	SPF          string
	HeaderFrom   string
	EnvelopeFrom string `json:",omitempty"`
	DKIMResults  []AuthResult
	SPFResults   []AuthResult
}

// AuthResult is one DKIM or SPF result behind a row.
type AuthResult struct {
	Domain   string
	Selector string `json:",omitempty"`
	Result   string
}

// Passed reports whether the row's messages passed DMARC: DKIM or SPF
// passed aligned.
func (r Record) Passed() bool { return r.DKIM == "pass" || r.SPF == "pass" }

// Sentinel errors; each is wrapped with the detail.
var (
	ErrTooLarge  = errors.New("the report is too large")
	ErrNoReport  = errors.New("no DMARC aggregate report was found")
	ErrMalformed = errors.New("the report is not valid DMARC XML")
)

// Extract finds the report's XML in data: XML itself, gzip, zip (one
// file), or a message whose parts hold one of those under any label. It
// never expands more than MaxExpanded bytes.
func Extract(data []byte) ([]byte, error) {
	if len(data) > MaxInput {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(data), MaxInput)
	}
	return extract(data, 0)
}

func extract(data []byte, depth int) ([]byte, error) {
	if depth > 3 {
		return nil, fmt.Errorf("%w: archives nested too deep", ErrNoReport)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	switch {
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrMalformed, err)
		}
		out, err := readBounded(zr)
		if err != nil {
			return nil, err
		}
		return extract(out, depth+1)
	case bytes.HasPrefix(data, []byte("PK\x03\x04")):
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, fmt.Errorf("%w: zip: %v", ErrMalformed, err)
		}
		var files []*zip.File
		for _, f := range zr.File {
			if !f.FileInfo().IsDir() {
				files = append(files, f)
			}
		}
		if len(files) != 1 {
			return nil, fmt.Errorf("%w: the zip holds %d files, not one", ErrNoReport, len(files))
		}
		if files[0].UncompressedSize64 > MaxExpanded {
			return nil, fmt.Errorf("%w: the zip's file expands to %d bytes, more than %d", ErrTooLarge, files[0].UncompressedSize64, MaxExpanded)
		}
		rc, err := files[0].Open()
		if err != nil {
			return nil, fmt.Errorf("%w: zip: %v", ErrMalformed, err)
		}
		defer rc.Close()
		out, err := readBounded(rc)
		if err != nil {
			return nil, err
		}
		return extract(out, depth+1)
	case bytes.HasPrefix(trimmed, []byte("<")):
		return data, nil
	}
	return fromMessage(data, depth)
}

// withoutMboxLine drops the "From sender date" line an mbox puts before
// a message, which people upload as they saved it.
func withoutMboxLine(data []byte) []byte {
	if bytes.HasPrefix(data, []byte("From ")) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return data[i+1:]
		}
	}
	return data
}

// readBounded reads a decompressor, failing past MaxExpanded: a small
// archive must not expand into memory without bound.
func readBounded(r io.Reader) ([]byte, error) {
	out, err := io.ReadAll(io.LimitReader(r, MaxExpanded+1))
	if err != nil {
		return nil, fmt.Errorf("%w: decompressing: %v", ErrMalformed, err)
	}
	if len(out) > MaxExpanded {
		return nil, fmt.Errorf("%w: it expands to more than %d bytes", ErrTooLarge, MaxExpanded)
	}
	return out, nil
}

// fromMessage looks for the report in a message's leaf parts: the first
// that is XML, gzip or zip once its transfer encoding is undone, whatever
// its Content-Type says (receivers label them application/octet-stream,
// application/x-zip-compressed, text/plain, ...).
func fromMessage(data []byte, depth int) ([]byte, error) {
	e, err := gomessage.Read(bytes.NewReader(withoutMboxLine(data)))
	if err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return nil, fmt.Errorf("%w: neither XML, gzip, zip nor a message (%v)", ErrNoReport, err)
	}
	var found []byte
	var firstErr error
	walkErr := e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
		if err != nil || found != nil {
			return nil
		}
		if mt, _, _ := part.Header.ContentType(); strings.HasPrefix(mt, "multipart/") {
			return nil
		}
		body, err := readBounded(part.Body)
		if err != nil {
			firstErr = err
			return nil
		}
		b := bytes.TrimLeft(body, " \t\r\n\ufeff")
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) && !bytes.HasPrefix(b, []byte("PK\x03\x04")) && !bytes.HasPrefix(b, []byte("<")) {
			return nil
		}
		if xmlData, err := extract(body, depth+1); err == nil && bytes.Contains(xmlData, []byte("<feedback")) {
			found = xmlData
		} else if firstErr == nil && err != nil {
			firstErr = err
		}
		return nil
	})
	if found != nil {
		return found, nil
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if walkErr != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoReport, walkErr)
	}
	return nil, fmt.Errorf("%w in the message", ErrNoReport)
}

// xmlFeedback is the XML, as both formats write it; the namespace of RFC
// 9990 is matched by local names.
type xmlFeedback struct {
	XMLName  xml.Name `xml:"feedback"`
	Metadata struct {
		OrgName   string `xml:"org_name"`
		Email     string `xml:"email"`
		ReportID  string `xml:"report_id"`
		Generator string `xml:"generator"`
		DateRange struct {
			Begin int64 `xml:"begin"`
			End   int64 `xml:"end"`
		} `xml:"date_range"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
		ADKIM  string `xml:"adkim"`
		ASPF   string `xml:"aspf"`
		P      string `xml:"p"`
		SP     string `xml:"sp"`
		Pct    string `xml:"pct"`
	} `xml:"policy_published"`
	Records []struct {
		Row struct {
			SourceIP string `xml:"source_ip"`
			Count    int64  `xml:"count"`
			Policy   struct {
				Disposition string `xml:"disposition"`
				DKIM        string `xml:"dkim"`
				SPF         string `xml:"spf"`
			} `xml:"policy_evaluated"`
		} `xml:"row"`
		Identifiers struct {
			HeaderFrom   string `xml:"header_from"`
			EnvelopeFrom string `xml:"envelope_from"`
		} `xml:"identifiers"`
		Auth struct {
			DKIM []struct {
				Domain   string `xml:"domain"`
				Selector string `xml:"selector"`
				Result   string `xml:"result"`
			} `xml:"dkim"`
			SPF []struct {
				Domain string `xml:"domain"`
				Result string `xml:"result"`
			} `xml:"spf"`
		} `xml:"auth_results"`
	} `xml:"record"`
}

// MaxRecords bounds the rows of one report.
const MaxRecords = 100000

// Parse reads a report's XML.
func Parse(data []byte) (Report, error) {
	var f xmlFeedback
	if err := xml.Unmarshal(data, &f); err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	m := f.Metadata
	r := Report{
		OrgName: strings.TrimSpace(m.OrgName), Email: strings.TrimSpace(m.Email), ReportID: strings.TrimSpace(m.ReportID),
		Generator: strings.TrimSpace(m.Generator),
		Begin:     time.Unix(m.DateRange.Begin, 0).UTC(), End: time.Unix(m.DateRange.End, 0).UTC(),
		Policy: Policy{Domain: strings.ToLower(strings.TrimSpace(f.Policy.Domain)), ADKIM: strings.TrimSpace(f.Policy.ADKIM),
			ASPF: strings.TrimSpace(f.Policy.ASPF), P: strings.TrimSpace(f.Policy.P), SP: strings.TrimSpace(f.Policy.SP)},
	}
	fmt.Sscan(strings.TrimSpace(f.Policy.Pct), &r.Policy.Pct)
	switch {
	case r.OrgName == "" || r.ReportID == "":
		return Report{}, fmt.Errorf("%w: report_metadata lacks org_name or report_id", ErrMalformed)
	case r.Policy.Domain == "":
		return Report{}, fmt.Errorf("%w: policy_published lacks its domain", ErrMalformed)
	case m.DateRange.End < m.DateRange.Begin:
		return Report{}, fmt.Errorf("%w: the date range ends before it begins", ErrMalformed)
	case len(f.Records) > MaxRecords:
		return Report{}, fmt.Errorf("%w: %d records, more than %d", ErrTooLarge, len(f.Records), MaxRecords)
	}
	for i, rec := range f.Records {
		ip, err := netip.ParseAddr(strings.TrimSpace(rec.Row.SourceIP))
		if err != nil {
			return Report{}, fmt.Errorf("%w: record %d: source_ip %q is not an address", ErrMalformed, i+1, rec.Row.SourceIP)
		}
		if rec.Row.Count < 0 {
			return Report{}, fmt.Errorf("%w: record %d: negative count", ErrMalformed, i+1)
		}
		out := Record{
			SourceIP: ip.Unmap(), Count: rec.Row.Count,
			Disposition:  strings.ToLower(strings.TrimSpace(rec.Row.Policy.Disposition)),
			DKIM:         strings.ToLower(strings.TrimSpace(rec.Row.Policy.DKIM)),
			SPF:          strings.ToLower(strings.TrimSpace(rec.Row.Policy.SPF)),
			HeaderFrom:   strings.ToLower(strings.TrimSpace(rec.Identifiers.HeaderFrom)),
			EnvelopeFrom: strings.ToLower(strings.TrimSpace(rec.Identifiers.EnvelopeFrom)),
		}
		for _, d := range rec.Auth.DKIM {
			out.DKIMResults = append(out.DKIMResults, AuthResult{Domain: strings.ToLower(strings.TrimSpace(d.Domain)), Selector: strings.TrimSpace(d.Selector), Result: strings.ToLower(strings.TrimSpace(d.Result))})
		}
		for _, s := range rec.Auth.SPF {
			out.SPFResults = append(out.SPFResults, AuthResult{Domain: strings.ToLower(strings.TrimSpace(s.Domain)), Result: strings.ToLower(strings.TrimSpace(s.Result))})
		}
		r.Records = append(r.Records, out)
	}
	return r, nil
}

// Read extracts and parses a report from what a receiver sent, and
// returns the XML it read too (kept as sent, for ?format=xml).
func Read(data []byte) (Report, []byte, error) {
	xmlData, err := Extract(data)
	if err != nil {
		return Report{}, nil, err
	}
	r, err := Parse(xmlData)
	return r, xmlData, err
}

// Messages is the number of messages the report covers.
func (r Report) Messages() int64 {
	var n int64
	for _, rec := range r.Records {
		n += rec.Count
	}
	return n
}

// Failure is a DMARC failure report (RFC 6591): one message that failed,
// as a receiver saw it.
type Failure struct {
	FeedbackType   string // auth-failure
	SourceIP       netip.Addr
	ReportedDomain string
	HeaderFrom     string
	ArrivalDate    time.Time
	AuthFailure    string // dmarc, dkim, spf
	DeliveryResult string
	OriginalRcptTo string
}

// ReadFailure reads a failure report: the message/feedback-report part
// of a multipart/report message.
func ReadFailure(data []byte) (Failure, error) {
	if len(data) > MaxInput {
		return Failure{}, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, len(data), MaxInput)
	}
	e, err := gomessage.Read(bytes.NewReader(withoutMboxLine(data)))
	if err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return Failure{}, fmt.Errorf("%w: %v", ErrNoReport, err)
	}
	var f Failure
	found := false
	e.Walk(func(_ []int, part *gomessage.Entity, err error) error {
		if mt, _, _ := part.Header.ContentType(); err != nil || found || mt != "message/feedback-report" {
			return nil
		}
		body, err := readBounded(part.Body)
		if err != nil {
			return nil
		}
		fields, err := gomessage.Read(bytes.NewReader(append(body, "\r\n\r\n"...)))
		if err != nil {
			return nil
		}
		h := fields.Header
		found = true
		f.FeedbackType = strings.ToLower(h.Get("Feedback-Type"))
		f.SourceIP, _ = netip.ParseAddr(strings.TrimSpace(h.Get("Source-IP")))
		f.ReportedDomain = strings.ToLower(strings.TrimSpace(h.Get("Reported-Domain")))
		f.AuthFailure = strings.ToLower(strings.TrimSpace(h.Get("Auth-Failure")))
		f.DeliveryResult = strings.ToLower(strings.TrimSpace(h.Get("Delivery-Result")))
		f.OriginalRcptTo = strings.TrimSpace(h.Get("Original-Rcpt-To"))
		if t, err := mail.ParseDate(h.Get("Arrival-Date")); err == nil {
			f.ArrivalDate = t.UTC()
		}
		if ar := h.Get("Authentication-Results"); ar != "" {
			if i := strings.Index(ar, "header.from="); i >= 0 {
				f.HeaderFrom = strings.ToLower(strings.Trim(strings.Fields(ar[i+len("header.from="):])[0], ";"))
			}
		}
		return nil
	})
	if !found {
		return Failure{}, fmt.Errorf("%w: no message/feedback-report part", ErrNoReport)
	}
	if f.FeedbackType != "auth-failure" {
		return Failure{}, fmt.Errorf("%w: the feedback type is %q, not auth-failure", ErrNoReport, f.FeedbackType)
	}
	return f, nil
}
