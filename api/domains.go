package api

// The Domains API (account token): Postmark's endpoints and fields, with
// two DKIM keys per domain (Ed25519 and RSA-2048) where Postmark has one.
// Postmark's DKIMHost/DKIMTextValue and their Pending and Revoked forms
// carry the RSA key; DKIMRecords lists every record to publish.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/postern/postern/internal/domainname"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/store"
)

// Postmark's ErrorCodes of the domains endpoints.
const (
	codeRotationPending = 505
	codeDomainNotFound  = 510
	codeDomainExists    = 512
)

// Values of DKIMUpdateStatus.
const (
	dkimPending  = "Pending"  // keys wait for their records to be found
	dkimVerified = "Verified" // nothing waits
)

// revokeGrace is how long after a rotation completes the old keys' records
// must stay in DNS at least: a delivery attempt that began before it may
// still send a signature made with them. It is the relay's lease
// (relay.DefaultLease), which bounds an attempt.
const revokeGrace = 30 * time.Minute

// maxDomainsCount is the largest count of GET /domains.
const maxDomainsCount = 500

// DKIMRecord is one TXT record to publish.
type DKIMRecord struct {
	Algorithm string // "ed25519" or "rsa"
	Host      string
	TextValue string
}

// DomainSummary is a domain in GET /domains.
type DomainSummary struct {
	ID                       int64
	Name                     string
	DKIMVerified             bool
	WeakDKIM                 bool
	ReturnPathDomainVerified bool
}

// DomainList is the answer of GET /domains.
type DomainList struct {
	TotalCount int
	Domains    []DomainSummary
}

// DomainDetails is one domain with everything to publish.
type DomainDetails struct {
	ID                            int64
	Name                          string
	DKIMVerified                  bool
	WeakDKIM                      bool
	DKIMHost                      string
	DKIMTextValue                 string
	DKIMPendingHost               string
	DKIMPendingTextValue          string
	DKIMRevokedHost               string
	DKIMRevokedTextValue          string
	SafeToRemoveRevokedKeyFromDNS bool
	DKIMUpdateStatus              string
	ReturnPathDomain              string
	ReturnPathDomainCNAMEValue    string
	ReturnPathDomainVerified      bool
	SPFHost                       string
	SPFTextValue                  string
	// DKIMRecords are the records to publish: the active keys' and, while
	// a rotation waits, the pending keys'. Revoked keys are not in it.
	DKIMRecords []DKIMRecord
	// Claim (Postern's own, present only when true): another account
	// registered the name first but has not proven it in DNS; this
	// account's domain takes the name when verifyDkim finds its records.
	Claim bool `json:",omitempty"`
}

func (a *API) registerDomains() {
	for _, p := range []string{"/domains", "/domains/{$}"} {
		a.mux.HandleFunc("GET "+p, a.account(a.listDomains))
		a.mux.HandleFunc("POST "+p, a.account(a.createDomain))
	}
	a.mux.HandleFunc("GET /domains/{id}", a.account(a.getDomain))
	a.mux.HandleFunc("PUT /domains/{id}", a.account(a.editDomain))
	a.mux.HandleFunc("DELETE /domains/{id}", a.account(a.deleteDomain))
	a.mux.HandleFunc("PUT /domains/{id}/verifyDkim", a.account(a.verifyDKIM))
	a.mux.HandleFunc("PUT /domains/{id}/verifyReturnPath", a.account(a.verifyReturnPath))
	a.mux.HandleFunc("POST /domains/{id}/rotatedkim", a.account(a.rotateDKIM))
}

var errDomainNotFound = notFound(codeDomainNotFound, "Domain")

// ownDomain returns the domain of the request's {id} if the principal's
// account has it; any other domain, existing or not, is errDomainNotFound.
func (a *API) ownDomain(r *http.Request, p accountPrincipal) (store.Domain, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Domain{}, errDomainNotFound
	}
	d, err := a.cfg.Store.Domain(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.AccountID != p.AccountID) {
		return store.Domain{}, errDomainNotFound
	}
	return d, err
}

// modifyOwnDomain changes the request's domain in one store transaction,
// checking there that the principal's account has it.
func (a *API) modifyOwnDomain(r *http.Request, p accountPrincipal, fn func(*store.Domain) error) (store.Domain, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Domain{}, errDomainNotFound
	}
	d, err := a.cfg.Store.ModifyDomain(id, func(d *store.Domain) error {
		if d.AccountID != p.AccountID {
			return errDomainNotFound
		}
		return fn(d)
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.Domain{}, errDomainNotFound
	}
	return d, err
}

func (a *API) listDomains(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	count, offset, err := paging(r, codeInvalidField, maxDomainsCount, 0)
	if err != nil {
		return err
	}
	all, err := a.cfg.Store.Domains(p.AccountID)
	if err != nil {
		return err
	}
	out := DomainList{TotalCount: len(all), Domains: []DomainSummary{}}
	for i := offset; i < len(all) && i < offset+count; i++ {
		d := all[i]
		out.Domains = append(out.Domains, DomainSummary{ID: d.ID, Name: d.Name, DKIMVerified: d.DKIMVerified})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getDomain(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	return a.writeDomain(w, d)
}

func (a *API) writeDomain(w http.ResponseWriter, d store.Domain) error {
	details, err := a.details(d)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, details)
	return nil
}

// details shows a domain as Postmark does. A domain never verified shows
// its (active) keys as pending, as Postmark shows a new domain's key: that
// is where its records are to be published before verifyDkim.
func (a *API) details(d store.Domain) (DomainDetails, error) {
	out := DomainDetails{
		ID:               d.ID,
		Name:             d.Name,
		Claim:            d.Claim,
		DKIMVerified:     d.DKIMVerified,
		DKIMUpdateStatus: dkimVerified,
		ReturnPathDomain: d.ReturnPathDomain,
		SPFHost:          d.Name,
		// The CNAME to publish for the Return-Path domain: Postern's
		// inbound domain, where bounces and complaints are taken.
		ReturnPathDomainCNAMEValue: a.cfg.InboundDomain,
		ReturnPathDomainVerified:   d.ReturnPathVerified,
		DKIMRecords:                []DKIMRecord{},
	}
	pending := d.PendingKeys
	if len(pending) == 0 && d.VerifiedAt.IsZero() {
		pending = d.Keys
	} else {
		out.DKIMHost, out.DKIMTextValue = rsaRecord(d.Keys)
	}
	if len(pending) > 0 {
		out.DKIMUpdateStatus = dkimPending
		out.DKIMPendingHost, out.DKIMPendingTextValue = rsaRecord(pending)
	}
	out.DKIMRevokedHost, out.DKIMRevokedTextValue = rsaRecord(d.RevokedKeys)
	for _, k := range append(append([]store.DKIMKey{}, d.Keys...), d.PendingKeys...) {
		out.DKIMRecords = append(out.DKIMRecords, DKIMRecord{Algorithm: k.Algorithm, Host: k.Host, TextValue: k.TextValue})
	}
	if len(d.RevokedKeys) > 0 && !a.cfg.Now().Before(d.RevokedAt.Add(revokeGrace)) {
		inUse, err := a.cfg.Store.QueuedSignatureBy(d.Name, dkim.Selectors(d.RevokedKeys))
		if err != nil {
			return DomainDetails{}, err
		}
		out.SafeToRemoveRevokedKeyFromDNS = !inUse
	}
	return out, nil
}

// rsaRecord returns the host and value of the RSA key among keys, which
// Postmark's single-key fields show.
func rsaRecord(keys []store.DKIMKey) (host, value string) {
	for _, k := range keys {
		if k.Algorithm == "rsa" {
			return k.Host, k.TextValue
		}
	}
	return "", ""
}

// domainRequest is the body of POST and PUT /domains.
type domainRequest struct {
	Name             string
	ReturnPathDomain *string
}

func (a *API) createDomain(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	var req domainRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	name := domainname.Normalize(req.Name)
	if name == "" {
		return errorf(http.StatusUnprocessableEntity, codeInvalidField, "Name is required: the domain to send from, e.g. example.com.")
	}
	if !domainname.ValidMail(name) {
		return errorf(http.StatusUnprocessableEntity, codeInvalidField, "Name %q is not a domain name: it needs at least one dot, and letters, digits and hyphens only (write an internationalised name in its xn-- form).", req.Name)
	}
	var returnPath string
	if req.ReturnPathDomain != nil {
		var err error
		if returnPath, err = checkReturnPath(name, *req.ReturnPathDomain); err != nil {
			return err
		}
	}
	exists := errorf(http.StatusUnprocessableEntity, codeDomainExists, "The domain %s already exists.", name)
	// The same answer whichever account has it, so that nothing is told
	// about other accounts but that the name is taken. A name registered
	// by another account but not proven in DNS can still be claimed (the
	// store decides it, in the transaction).
	if held, err := a.cfg.Store.DomainByName(name); err == nil && (held.AccountID == p.AccountID || held.DKIMVerified) {
		return exists
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	keys, err := a.generateKeys(name)
	if err != nil {
		return err
	}
	d, err := a.cfg.Store.CreateDomain(store.Domain{AccountID: p.AccountID, Name: name, Keys: keys, ReturnPathDomain: returnPath}, a.cfg.Now())
	if errors.Is(err, store.ErrDuplicate) {
		return exists
	}
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: domain created", "domain", d.Name, "id", d.ID, "account", p.AccountID, "token", p.Prefix)
	return a.writeDomain(w, d)
}

func (a *API) generateKeys(name string) ([]store.DKIMKey, error) {
	if a.cfg.GenerateKeys == nil {
		return nil, errors.New("api: Config.GenerateKeys is not set: no DKIM keys can be made")
	}
	keys, err := a.cfg.GenerateKeys(name)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("api: GenerateKeys(%s) made no key", name)
	}
	return keys, nil
}

// checkReturnPath validates a ReturnPathDomain: empty (none), or a
// subdomain of the domain, as Postmark requires.
func checkReturnPath(domain, returnPath string) (string, error) {
	rp := domainname.Normalize(returnPath)
	if rp == "" {
		return "", nil
	}
	if !domainname.ValidMail(rp) || !strings.HasSuffix(rp, "."+domain) {
		return "", errorf(http.StatusUnprocessableEntity, codeInvalidField, "ReturnPathDomain %q must be a subdomain of %s, e.g. pm-bounces.%s.", returnPath, domain, domain)
	}
	return rp, nil
}

func (a *API) editDomain(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	if _, err := a.ownDomain(r, p); err != nil {
		return err
	}
	var req domainRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	d, err := a.modifyOwnDomain(r, p, func(d *store.Domain) error {
		if req.ReturnPathDomain == nil {
			return nil
		}
		rp, err := checkReturnPath(d.Name, *req.ReturnPathDomain)
		if err != nil {
			return err
		}
		if rp != d.ReturnPathDomain {
			d.ReturnPathDomain, d.ReturnPathVerified = rp, false
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.writeDomain(w, d)
}

func (a *API) deleteDomain(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.DeleteDomain(d.ID); errors.Is(err, store.ErrNotFound) {
		return errDomainNotFound
	} else if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: domain deleted", "domain", d.Name, "id", d.ID, "account", p.AccountID, "token", p.Prefix)
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: "Domain " + d.Name + " removed."})
	return nil
}

// Outcomes of looking one record up.
// verifyDKIM looks the domain's records up (dkim.Verify): a rotation
// whose pending records are published completes, a claim proven in DNS
// wins the name, and otherwise DKIMVerified says whether the active keys'
// records are all published. When DNS gives no answer and nothing can be
// promoted, nothing changes and the answer is 503.
func (a *API) verifyDKIM(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	v, err := dkim.Verify(r.Context(), a.cfg.Resolver, a.cfg.Store, d, a.cfg.Now(), func(cur *store.Domain) error {
		if cur.AccountID != p.AccountID {
			return errDomainNotFound
		}
		return nil
	})
	var dnsErr *dkim.LookupError
	switch {
	case errors.As(err, &dnsErr):
		return errorf(http.StatusServiceUnavailable, 0, "%s; nothing was changed. Try again.", dnsErr)
	case errors.Is(err, store.ErrDomainProven):
		return errorf(http.StatusUnprocessableEntity, codeDomainExists, "The domain %s is verified by the account that registered it first; it stays with that account while its DKIM records are published.", d.Name)
	case errors.Is(err, dkim.ErrKeysChanged):
		return errorf(http.StatusConflict, 0, "%s.", sentence(err))
	case errors.Is(err, store.ErrNotFound):
		return errDomainNotFound
	case err != nil:
		return err
	}
	if v.Won {
		a.cfg.Logger.Info("api: domain claim won", "domain", v.Domain.Name, "id", v.Domain.ID, "account", p.AccountID)
	}
	if v.Promoted {
		a.cfg.Logger.Info("api: DKIM rotation completed", "domain", v.Domain.Name, "selectors", strings.Join(dkim.Selectors(v.Domain.Keys), " "), "revoked", strings.Join(dkim.Selectors(v.Domain.RevokedKeys), " "))
	}
	return a.writeDomain(w, v.Domain)
}

// verifyReturnPath cannot check a CNAME record: the API's resolver looks
// TXT records up only, and Postern does not use a domain's return path
// yet (the relay's return-path-domain setting is installation-wide).
func (a *API) verifyReturnPath(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	if d.ReturnPathDomain == "" {
		return unprocessable(codeInvalidField, "The domain has no ReturnPathDomain to verify; set one with PUT /domains/%d.", d.ID)
	}
	found := false
	if a.cfg.CNAME != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		cname, err := a.cfg.CNAME(ctx, d.ReturnPathDomain)
		cancel()
		found = err == nil && cname == a.cfg.InboundDomain
	}
	d, err = a.modifyOwnDomain(r, p, func(d *store.Domain) error {
		d.ReturnPathVerified = found
		return nil
	})
	if err != nil {
		return err
	}
	return a.writeDomain(w, d)
}

// rotateDKIM makes new keys, pending until verifyDkim finds their records.
// The active keys go on signing meanwhile. A rotation already waiting
// (or a new domain's first keys, never verified) is refused with 505.
func (a *API) rotateDKIM(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	d, err := a.ownDomain(r, p)
	if err != nil {
		return err
	}
	if err := rotationRefused(d); err != nil {
		return err
	}
	keys, err := a.generateKeys(d.Name)
	if err != nil {
		return err
	}
	d, err = a.modifyOwnDomain(r, p, func(cur *store.Domain) error {
		if err := rotationRefused(*cur); err != nil {
			return err
		}
		cur.PendingKeys = keys
		return nil
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: DKIM rotation started", "domain", d.Name, "pending", strings.Join(dkim.Selectors(keys), " "), "account", p.AccountID, "token", p.Prefix)
	return a.writeDomain(w, d)
}

func rotationRefused(d store.Domain) error {
	switch {
	case len(d.PendingKeys) > 0:
		return errorf(http.StatusUnprocessableEntity, codeRotationPending, "A DKIM rotation of %s is already in progress: publish the pending records, then call verifyDkim.", d.Name)
	case d.VerifiedAt.IsZero():
		return errorf(http.StatusUnprocessableEntity, codeRotationPending, "The DKIM keys of %s were never verified: publish their records and call verifyDkim before rotating them.", d.Name)
	}
	return nil
}
