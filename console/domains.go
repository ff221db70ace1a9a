package console

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/store"
)

func (c *Console) registerDomains() {
	c.mux.HandleFunc("GET /domains", c.signedIn(c.domainsPage))
	c.mux.HandleFunc("GET /domains/{id}", c.signedIn(c.domainPage))
	c.mux.HandleFunc("POST /domains/{id}/verify", c.signedIn(c.verifyDomain))
}

// accountWide refuses a page of the account's own (domains, people) to
// a Member, who may not manage the account: as if it did not exist.
func accountWide(v *viewer) error {
	if !v.AccountWide() {
		return errNotFound
	}
	return nil
}

func (c *Console) domainsPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	all, err := c.cfg.Store.Domains(v.Account.ID)
	if err != nil {
		return err
	}
	c.render(w, v, http.StatusOK, "domains", "Domains", all)
	return nil
}

type domainPage struct {
	Domain store.Domain
	// Records are the DKIM records to publish: the active keys until a
	// rotation, then the pending ones too.
	Records []store.DKIMKey
	// Senders are the account's servers that have sent as the domain.
	Senders []store.Server
	Error   string
}

// domain is the account's domain of the path: errNotFound for any other.
func (c *Console) domain(r *http.Request, v *viewer) (store.Domain, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Domain{}, errNotFound
	}
	d, err := c.cfg.Store.Domain(id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && d.AccountID != v.Account.ID) {
		return store.Domain{}, errNotFound
	}
	return d, err
}

func (c *Console) domainPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	d, err := c.domain(r, v)
	if err != nil {
		return err
	}
	return c.showDomain(w, v, http.StatusOK, d, "")
}

func (c *Console) showDomain(w http.ResponseWriter, v *viewer, status int, d store.Domain, problem string) error {
	p := domainPage{Domain: d, Records: append(append([]store.DKIMKey{}, d.Keys...), d.PendingKeys...), Error: problem}
	senders, err := c.senders(d)
	if err != nil {
		return err
	}
	p.Senders = senders
	c.render(w, v, status, "domain", d.Name, p)
	return nil
}

func (c *Console) verifyDomain(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	d, err := c.domain(r, v)
	if err != nil {
		return err
	}
	res, err := dkim.Verify(r.Context(), c.cfg.Resolver, c.cfg.Store, d, c.cfg.Now(), func(cur *store.Domain) error {
		if cur.AccountID != v.Account.ID {
			return errNotFound
		}
		return nil
	})
	var lookupErr *dkim.LookupError
	switch {
	case errors.As(err, &lookupErr):
		return c.showDomain(w, v, http.StatusServiceUnavailable, d, sentence(err)+"; nothing was changed. Try again.")
	case errors.Is(err, store.ErrDomainProven):
		return c.showDomain(w, v, http.StatusUnprocessableEntity, d, "The domain is verified by the account that registered it first; it stays there while its DKIM records are published.")
	case errors.Is(err, dkim.ErrKeysChanged):
		return c.showDomain(w, v, http.StatusConflict, d, sentence(err)+".")
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console: domain verified", "domain", res.Domain.Name, "verified", res.Domain.DKIMVerified, "user", v.User.ID)
	redirect(w, r, fmt.Sprintf("/domains/%d", d.ID))
	return nil
}

// senders are the account's servers that sent as d, among each server's
// newest store.SearchScanLimit messages.
func (c *Console) senders(d store.Domain) ([]store.Server, error) {
	servers, err := c.cfg.Store.ListServers(d.AccountID)
	if err != nil {
		return nil, err
	}
	var out []store.Server
	for _, srv := range servers {
		res, err := c.cfg.Store.SearchMessages(srv.ID, store.MessageQuery{FromDomain: d.Name})
		if err != nil {
			return nil, err
		}
		if res.Total > 0 {
			out = append(out, srv)
		}
	}
	store.SortServers(out)
	return out, nil
}
