package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/internal/dmarcreport"
	"github.com/postern/postern/store"
)

func (a *API) registerDMARC() {
	a.mux.HandleFunc("GET /domains/{id}/dmarc", a.account(a.getDMARC))
	a.mux.HandleFunc("PUT /domains/{id}/verifyDmarc", a.account(a.getDMARC))
	a.mux.HandleFunc("POST /domains/{id}/dmarc/reports", a.account(a.uploadDMARCReport))
	a.mux.HandleFunc("GET /domains/{id}/dmarc/reports", a.account(a.listDMARCReports))
	a.mux.HandleFunc("GET /domains/{id}/dmarc/reports/{rid}", a.account(a.getDMARCReport))
	a.mux.HandleFunc("GET /domains/{id}/dmarc/sources", a.account(a.dmarcSources))
	a.mux.HandleFunc("PUT /domains/{id}/dmarc/sources/{ip}", a.account(a.markDMARCSource))
}

// DMARCRecord is the answer of GET /domains/{id}/dmarc and PUT
// /domains/{id}/verifyDmarc: the record to publish, what DNS has, and the
// policy advice.
type DMARCRecord struct {
	Name                  string
	Value                 string
	Published             *string // the TXT found; null when none
	Verified              bool    // published, and sending reports to Postern
	ExternalAuthorization DNSRecord
	Advice                dmarc.Advice
}

// DNSRecord is a record to publish.
type DNSRecord struct{ Name, Value string }

// DMARCReportSummary is one report in a listing.
type DMARCReportSummary struct {
	ID           int64
	Organization string
	ExternalID   string
	Begin, End   time.Time
	Messages     int64
	Status       string // parsed or failed
	Error        string `json:",omitempty"`
	Via          string // mail or upload
	ReceivedAt   time.Time
}

// DMARCReportList is the answer of GET /domains/{id}/dmarc/reports.
type DMARCReportList struct {
	TotalCount int
	Reports    []DMARCReportSummary
}

// DMARCReportDetails is one report with its rows.
type DMARCReportDetails struct {
	DMARCReportSummary
	Rows []store.DMARCRow
}

// DMARCSources is the answer of GET /domains/{id}/dmarc/sources.
type DMARCSources struct {
	TotalMessages int64
	DmarcPass     int64
	Sources       []dmarc.Source
}

const (
	codeDMARCReportInvalid = 1401
	codeDMARCDuplicate     = 1402
)

// dmarcKey is the installation's key, which signs report addresses.
func (a *API) dmarcKey() ([]byte, error) { return a.cfg.Store.InstallationKey() }

func (a *API) getDMARC(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	key, err := a.dmarcKey()
	if err != nil {
		return err
	}
	out := DMARCRecord{Name: "_dmarc." + d.Name, Value: dmarc.Record(key, d.ID, a.cfg.InboundDomain)}
	out.ExternalAuthorization.Name, out.ExternalAuthorization.Value = dmarc.ExternalAuthorization(d.Name, a.cfg.InboundDomain)
	current := ""
	if a.cfg.Resolver != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		if published, ok := dmarc.LookupPublished(ctx, a.cfg.Resolver, d.Name); ok {
			out.Published, current = &published.Record, published.Policy
			address := "mailto:" + dmarc.Address(key, d.ID, a.cfg.InboundDomain)
			for _, rua := range published.RUA {
				out.Verified = out.Verified || strings.EqualFold(strings.SplitN(rua, "!", 2)[0], address)
			}
		}
	}
	now := a.cfg.Now()
	reports, err := a.cfg.Store.DMARCParsedReports(d.ID, now.Add(-30*24*time.Hour), now)
	if err != nil {
		return err
	}
	total, pass, sources, err := a.sources(d, reports)
	if err != nil {
		return err
	}
	out.Advice = dmarc.Advise(current, total, pass, sources)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sources sums reports into the domain's sources.
func (a *API) sources(d store.Domain, reports []store.DMARCReport) (int64, int64, []dmarc.Source, error) {
	known, err := a.cfg.Store.DMARCKnownSources(d.ID)
	if err != nil {
		return 0, 0, nil, err
	}
	var selectors []string
	for _, k := range d.Keys {
		selectors = append(selectors, k.Selector)
	}
	total, pass, sources := dmarc.Sources(reports, known, selectors, a.cfg.SendingIPs, a.cfg.PTR)
	return total, pass, sources, nil
}

func (a *API) uploadDMARCReport(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, dmarcreport.MaxInput))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, codeRequestTooBig, "A report may be at most %d bytes.", dmarcreport.MaxInput)
		}
		return err
	}
	report, err := dmarc.Ingest(a.cfg.Store, d, body, "upload", a.cfg.Now())
	switch {
	case errors.Is(err, store.ErrDuplicateReport):
		return unprocessable(codeDMARCDuplicate, "This report (same organisation and report ID) was already received; it is counted once.")
	case report.ID != 0 && err != nil:
		// Kept as failed, and shown in the listing.
		return unprocessable(codeDMARCReportInvalid, "The report was kept but not counted (report %d): %v.", report.ID, err)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, reportSummary(report))
	return nil
}

func reportSummary(r store.DMARCReport) DMARCReportSummary {
	return DMARCReportSummary{ID: r.ID, Organization: r.OrgName, ExternalID: r.ExternalID, Begin: r.Begin.UTC(), End: r.End.UTC(),
		Messages: r.Messages, Status: r.Status, Error: r.Error, Via: r.Via, ReceivedAt: r.ReceivedAt.UTC()}
}

func (a *API) listDMARCReports(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	list, err := a.cfg.Store.DMARCReports(d.ID)
	if err != nil {
		return err
	}
	out := DMARCReportList{TotalCount: len(list), Reports: make([]DMARCReportSummary, len(list))}
	for i, rep := range list {
		out.Reports[i] = reportSummary(rep)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getDMARCReport answers one report as JSON, or with ?format=xml what was
// received, decompressed when it was a report.
func (a *API) getDMARCReport(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	rid, ok := pathID(r, "rid")
	if !ok {
		return notFound(codeNotFound, "Report")
	}
	rep, received, err := a.cfg.Store.DMARCReport(d.ID, rid)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(codeNotFound, "Report")
	}
	if err != nil {
		return err
	}
	if r.URL.Query().Get("format") == "xml" {
		data, err := dmarcreport.Extract(received)
		if err != nil {
			data = received // a failed report: as it came
		}
		w.Header().Set("Content-Type", "application/xml")
		w.Write(data)
		return nil
	}
	writeJSON(w, http.StatusOK, DMARCReportDetails{DMARCReportSummary: reportSummary(rep), Rows: rep.Rows})
	return nil
}

func (a *API) dmarcSources(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	now := a.cfg.Now().UTC()
	from, to := now.Add(-30*24*time.Hour), now
	for name, t := range map[string]*time.Time{"fromdate": &from, "todate": &to} {
		if v := r.URL.Query().Get(name); v != "" {
			parsed, err := time.Parse(time.DateOnly, v)
			if err != nil {
				return unprocessable(codeInvalidField, "%s must be a date, YYYY-MM-DD; got %q.", name, v)
			}
			*t = parsed
		}
	}
	to = to.Add(24*time.Hour - time.Nanosecond) // the whole day
	reports, err := a.cfg.Store.DMARCParsedReports(d.ID, from, to)
	if err != nil {
		return err
	}
	total, pass, sources, err := a.sources(d, reports)
	if err != nil {
		return err
	}
	if sources == nil {
		sources = []dmarc.Source{}
	}
	writeJSON(w, http.StatusOK, DMARCSources{TotalMessages: total, DmarcPass: pass, Sources: sources})
	return nil
}

// markDMARCSource marks a source known (or not), for Owners and Admins.
func (a *API) markDMARCSource(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(r.PathValue("ip"))
	if err != nil {
		return unprocessable(codeInvalidField, "%q is not an IP address.", r.PathValue("ip"))
	}
	var req struct{ Known bool }
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if err := a.cfg.Store.SetDMARCSourceKnown(d.ID, ip.Unmap().String(), req.Known); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"IP": ip.Unmap().String(), "Known": req.Known})
	return nil
}
