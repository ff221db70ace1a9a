package store

import (
	"errors"
	"time"
)

// Statuses of a DMARC report.
const (
	DMARCParsed = "parsed"
	DMARCFailed = "failed" // kept with its reason and what was received
)

// DMARCReport is one aggregate report about a domain, as received: parsed,
// or failed with the reason, never dropped.
type DMARCReport struct {
	ID         int64
	DomainID   int64
	OrgName    string
	ExternalID string // the reporter's report_id
	Begin, End time.Time
	Messages   int64
	Status     string // DMARCParsed or DMARCFailed
	Error      string `json:",omitempty"`
	Via        string // "mail" or "upload"
	ReceivedAt time.Time
	Rows       []DMARCRow `json:",omitempty"`
}

// DMARCRow is one row of a report: the messages from one source with one
// outcome.
type DMARCRow struct {
	SourceIP    string
	Count       int64
	Disposition string // none, quarantine, reject
	DKIM        string // the DMARC evaluation of DKIM: pass or fail
	SPF         string
	HeaderFrom  string
	// DKIMPassSelectors are the selectors whose signatures of the
	// domain passed: a selector of Postern's marks mail sent through it.
	DKIMPassSelectors []string `json:",omitempty"`
}

// ErrDuplicateReport: a report of the same organisation and ID was
// already counted for the domain.
var ErrDuplicateReport = errors.New("this report was already received")

// DMARCReports keeps the DMARC reports of each domain.
type DMARCReports interface {
	// AddDMARCReport files r with a new ID, and what was received. A
	// parsed report whose organisation and ID the domain already has
	// is refused with ErrDuplicateReport, and counted once.
	AddDMARCReport(r DMARCReport, received []byte) (DMARCReport, error)
	// DMARCReports lists a domain's reports, newest first, without rows.
	DMARCReports(domainID int64) ([]DMARCReport, error)
	// DMARCReport returns one report with its rows and what was
	// received, or ErrNotFound.
	DMARCReport(domainID, id int64) (DMARCReport, []byte, error)
	// DMARCParsedReports returns the parsed reports, with their rows,
	// whose range overlaps [from, to].
	DMARCParsedReports(domainID int64, from, to time.Time) ([]DMARCReport, error)
	// SetDMARCSourceKnown marks a source address known, or not.
	SetDMARCSourceKnown(domainID int64, ip string, known bool) error
	// DMARCKnownSources returns the domain's known source addresses.
	DMARCKnownSources(domainID int64) (map[string]bool, error)
}
