package api

import (
	"net/http"
	"time"

	"github.com/postern/postern/internal/domainname"
)

// registerTLSReports adds GET /tlsrpt, the operator's preview of a TLS
// report (RFC 8460): which sessions to a recipient domain's servers met
// its MTA-STS or DANE policy on a day. It is the operator's alone: the
// counts cover every account's mail to that domain.
func (a *API) registerTLSReports() {
	a.mux.HandleFunc("GET /tlsrpt", a.account(a.operator(a.previewTLSReport)))
}

// previewTLSReport answers the report to ?domain= for ?day= (YYYY-MM-DD,
// UTC; today if absent), as it would be sent, in RFC 8460's JSON.
func (a *API) previewTLSReport(w http.ResponseWriter, r *http.Request, _ accountPrincipal) error {
	domain := domainname.Normalize(r.URL.Query().Get("domain"))
	if !domainname.Valid(domain) {
		return unprocessable(codeInvalidField, "domain must be a domain name, e.g. ?domain=example.com.")
	}
	day := a.cfg.Now().UTC().Truncate(24 * time.Hour)
	if s := r.URL.Query().Get("day"); s != "" {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return unprocessable(codeInvalidField, "day must be a date, YYYY-MM-DD, got %q.", s)
		}
		day = d
	}
	if a.cfg.TLSReport == nil {
		return errorf(http.StatusNotFound, codeNotFound, "No TLS report for %s on %s.", domain, day.Format(time.DateOnly))
	}
	report, found, err := a.cfg.TLSReport(day, domain)
	if err != nil {
		return err
	}
	if !found {
		return errorf(http.StatusNotFound, codeNotFound, "No TLS report for %s on %s: no session to its servers was counted.", domain, day.Format(time.DateOnly))
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}
