package store

import (
	"slices"
	"time"
)

// STSPolicy is a recipient domain's MTA-STS policy as last fetched (RFC
// 8461 §5.1): it applies until Expires, also when the domain's policy
// server cannot be reached, and is fetched again when the domain's
// _mta-sts record announces another ID.
type STSPolicy struct {
	Domain    string // lower case
	ID        string // the id of the _mta-sts record it was fetched under
	Text      string // the policy file as served
	FetchedAt time.Time
	Expires   time.Time // FetchedAt plus the policy's max_age
}

// STSPolicies keeps the MTA-STS policies of recipient domains, for every
// node of an installation.
type STSPolicies interface {
	// STSPolicy returns domain's cached policy, expired or not, or
	// ErrNotFound.
	STSPolicy(domain string) (STSPolicy, error)
	// PutSTSPolicy replaces domain's cached policy.
	PutSTSPolicy(p STSPolicy) error
}

// TLS-RPT policy types (RFC 8460 §4.4).
const (
	TLSPolicySTS      = "sts"
	TLSPolicyTLSA     = "tlsa"
	TLSPolicyNotFound = "no-policy-found"
)

// TLSPolicyRef names the policy a delivery was held to, as TLS-RPT
// reports it.
type TLSPolicyRef struct {
	Type    string   // TLSPolicySTS, TLSPolicyTLSA or TLSPolicyNotFound
	Strings []string `json:",omitempty"` // the policy's lines, or the TLSA records
	MXHosts []string `json:",omitempty"` // an STS policy's mx patterns
}

// TLSFailure is one kind of failed session in a TLS report.
type TLSFailure struct {
	ResultType  string // RFC 8460 §4.3: starttls-not-supported, certificate-host-mismatch, ...
	SendingIP   string `json:",omitempty"`
	ReceivingMX string `json:",omitempty"`
	ReceivingIP string `json:",omitempty"`
	Reason      string `json:",omitempty"` // failure-reason-code, in words
}

// TLSResult is a count of sessions to one recipient domain's servers,
// under one policy, on one day, that all ended the same way.
type TLSResult struct {
	Day     time.Time // midnight UTC
	Domain  string    // the policy domain: the recipient domain, lower case
	Policy  TLSPolicyRef
	Failure *TLSFailure // nil: the sessions met the policy
	Count   int64
}

// TLSReportDay is what one day's TLS report to one domain will say.
type TLSReportDay struct {
	Day      time.Time
	Domain   string
	Policies []TLSPolicyCounts
}

// TLSPolicyCounts are the sessions held to one policy.
type TLSPolicyCounts struct {
	TLSPolicyRef
	Success, Failure int64
	Failures         []TLSFailureCount
}

// TLSFailureCount counts sessions that failed the same way.
type TLSFailureCount struct {
	TLSFailure
	Count int64
}

// MaxTLSFailureKinds bounds the distinct failures a report keeps for one
// policy; further kinds are counted in Failure only.
const MaxTLSFailureKinds = 100

// TLSDay is the day a session at t counts for.
func TLSDay(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}

// Add counts r, which must be of d's day and domain.
func (d *TLSReportDay) Add(r TLSResult) {
	i := slices.IndexFunc(d.Policies, func(p TLSPolicyCounts) bool { return samePolicy(p.TLSPolicyRef, r.Policy) })
	if i < 0 {
		d.Policies = append(d.Policies, TLSPolicyCounts{TLSPolicyRef: r.Policy})
		i = len(d.Policies) - 1
	}
	p := &d.Policies[i]
	if r.Failure == nil {
		p.Success += r.Count
		return
	}
	p.Failure += r.Count
	if j := slices.IndexFunc(p.Failures, func(f TLSFailureCount) bool { return f.TLSFailure == *r.Failure }); j >= 0 {
		p.Failures[j].Count += r.Count
	} else if len(p.Failures) < MaxTLSFailureKinds {
		p.Failures = append(p.Failures, TLSFailureCount{TLSFailure: *r.Failure, Count: r.Count})
	}
}

func samePolicy(a, b TLSPolicyRef) bool {
	return a.Type == b.Type && slices.Equal(a.Strings, b.Strings) && slices.Equal(a.MXHosts, b.MXHosts)
}

// TLSReports keeps the counts that TLS reports are made of, per day and
// recipient domain, until they are sent.
type TLSReports interface {
	// AddTLSResults counts results into their days' reports, in one
	// transaction, with TLSReportDay.Add.
	AddTLSResults(results []TLSResult) error
	// TLSReportDays returns the reports of the days before before,
	// oldest first.
	TLSReportDays(before time.Time) ([]TLSReportDay, error)
	// TLSReportDay returns one day's report to domain, or ErrNotFound.
	TLSReportDay(day time.Time, domain string) (TLSReportDay, error)
	// DeleteTLSReportDay forgets a report, once sent or given up.
	DeleteTLSReportDay(day time.Time, domain string) error
}
