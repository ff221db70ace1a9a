package api

import (
	"errors"
	"net/http"

	"github.com/postern/postern/store"
)

// TransferRequest is the body of POST /servers/{id}/transfer (Postern's
// own).
type TransferRequest struct {
	AccountID   int64 // the account to move the server to
	CopyDomains bool  // copy the domains it sent as, with their DKIM keys
}

// TransferAnswer is the answer of POST /servers/{id}/transfer: the server
// as GET /servers/{id} shows it, now in the target account, and what
// happened to its domains and grants (store.TransferResult).
type TransferAnswer struct {
	Server         Server
	CopiedDomains  []string
	MissingDomains []string
	RemovedGrants  int
}

// registerTransfer adds POST /servers/{id}/transfer: the operator
// account's owner tokens move a server of any account to another, with
// its data. Any other account token gets an unknown path's answer, as
// the other operator endpoints give.
func (a *API) registerTransfer() {
	a.mux.HandleFunc("POST /servers/{id}/transfer", a.account(a.operator(a.transferServer)))
}

func (a *API) transferServer(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	id, ok := pathID(r, "id")
	if !ok {
		return serverNotFound()
	}
	var req TransferRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if req.AccountID <= 0 {
		return unprocessable(codeInvalidField, "The AccountID of the account to move the server to is required.")
	}
	srv, err := a.cfg.Store.Server(id)
	if errors.Is(err, store.ErrNotFound) {
		return serverNotFound()
	}
	if err != nil {
		return err
	}
	if _, err := a.cfg.Store.Account(req.AccountID); errors.Is(err, store.ErrNotFound) {
		return notFound(codeNotFound, "Account")
	} else if err != nil {
		return err
	}
	res, err := a.cfg.Store.TransferServer(store.Transfer{ServerID: id, FromAccount: srv.AccountID, ToAccount: req.AccountID, CopyDomains: req.CopyDomains}, a.cfg.Now())
	switch {
	case errors.Is(err, store.ErrSameAccount):
		return unprocessable(codeInvalidField, "Server %d is in account %d already.", id, req.AccountID)
	case errors.Is(err, store.ErrDuplicateName):
		return unprocessable(codeDuplicateServer, "Account %d already has a server named %q: rename one of them first.", req.AccountID, srv.Name)
	case errors.Is(err, store.ErrNotFound):
		// The server moved or went between the reads and the transfer.
		return serverNotFound()
	case err != nil:
		return err
	}
	out, err := a.maskedServer(res.Server)
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: server transferred", "server", id, "from", srv.AccountID, "to", req.AccountID,
		"copied_domains", len(res.CopiedDomains), "missing_domains", len(res.MissingDomains), "removed_grants", res.RemovedGrants, "by", p.Prefix)
	writeJSON(w, http.StatusOK, TransferAnswer{Server: out, CopiedDomains: nonNil(res.CopiedDomains), MissingDomains: nonNil(res.MissingDomains), RemovedGrants: res.RemovedGrants})
	return nil
}
