package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// maxAccountName bounds an account's name, in characters.
const maxAccountName = 100

// Account is an account in GET /accounts (Postern's own API).
type Account struct {
	ID          int64
	Name        string
	Operator    bool
	ServerCount int
	CreatedAt   time.Time
}

// AccountList is the answer of GET /accounts.
type AccountList struct {
	TotalCount int
	Accounts   []Account
}

// NewAccount is the answer of POST /accounts: the owner token is shown
// there only.
type NewAccount struct {
	ID           int64
	Name         string
	AccountToken string
}

// registerAccounts adds the accounts endpoints (Postern's own): accounts,
// for the operator account's owner tokens only, and the account's own
// tokens.
func (a *API) registerAccounts() {
	a.mux.HandleFunc("GET /accounts", a.account(a.operator(a.listAccounts)))
	a.mux.HandleFunc("POST /accounts", a.account(a.operator(a.createAccount)))
	a.mux.HandleFunc("DELETE /accounts/{id}", a.account(a.operator(a.deleteAccount)))
	a.mux.HandleFunc("GET /account/tokens", a.account(a.listAccountTokens))
	a.mux.HandleFunc("POST /account/tokens", a.account(a.createAccountToken))
	a.mux.HandleFunc("DELETE /account/tokens/{prefix}", a.account(a.revokeAccountToken))
}

// operator wraps h: the token must be an owner token of the operator
// account. Any other answers exactly as an endpoint that does not exist,
// so that no account learns that there are others.
func (a *API) operator(h accountHandler) accountHandler {
	return func(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
		op, err := a.cfg.Store.OperatorAccount()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err != nil || p.AccountID != op || p.Role != store.RoleOwner {
			return errorf(http.StatusNotFound, codeNotFound, "No such endpoint: %s %s", r.Method, r.URL.Path)
		}
		return h(w, r, p)
	}
}

func (a *API) listAccounts(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	accts, err := a.cfg.Store.Accounts()
	if err != nil {
		return err
	}
	out := AccountList{TotalCount: len(accts), Accounts: make([]Account, len(accts))}
	for i, acct := range accts {
		servers, err := a.cfg.Store.ListServers(acct.ID)
		if err != nil {
			return err
		}
		out.Accounts[i] = Account{ID: acct.ID, Name: acct.Name, Operator: acct.ID == p.AccountID, ServerCount: len(servers), CreatedAt: acct.CreatedAt}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) createAccount(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	var req struct{ Name *string }
	if err := a.decode(r, &req); err != nil {
		return err
	}
	if req.Name == nil {
		return unprocessable(codeInvalidField, "The account's Name is required.")
	}
	name := strings.TrimSpace(*req.Name)
	switch {
	case name == "":
		return unprocessable(codeInvalidField, "The account's Name must not be empty.")
	case len([]rune(name)) > maxAccountName:
		return unprocessable(codeInvalidField, "The account's Name must be at most %d characters.", maxAccountName)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return unprocessable(codeInvalidField, "The account's Name must not contain control characters.")
	}
	var acct store.Account
	tok, err := auth.CreateToken(func(nt store.NewToken) error {
		var err error
		acct, err = a.cfg.Store.CreateAccountWithOwner(name, nt, a.cfg.Now())
		return err
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: account created", "account", acct.ID, "by", p.Prefix)
	writeJSON(w, http.StatusOK, NewAccount{ID: acct.ID, Name: acct.Name, AccountToken: tok})
	return nil
}

func (a *API) deleteAccount(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	id, ok := pathID(r, "id")
	if !ok {
		return notFound(codeNotFound, "Account")
	}
	acct, err := a.cfg.Store.Account(id)
	if errors.Is(err, store.ErrNotFound) {
		return notFound(codeNotFound, "Account")
	}
	if err != nil {
		return err
	}
	err = a.cfg.Store.DeleteAccount(id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(codeNotFound, "Account")
	case errors.Is(err, store.ErrOperator):
		return unprocessable(codeNoDeleteAccess, "The operator account cannot be deleted.")
	case errors.Is(err, store.ErrHasServers):
		return unprocessable(codeNoDeleteAccess, "Account %s still has servers or domains: delete them first.", acct.Name)
	case err != nil:
		return err
	}
	a.cfg.Logger.Info("api: account deleted", "account", id, "by", p.Prefix)
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("Account %s removed.", acct.Name)})
	return nil
}

func (a *API) listAccountTokens(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	toks, err := a.cfg.Store.AccountTokens(p.AccountID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenList(toks))
	return nil
}

// parseRole reads a token role, in any case.
func parseRole(s string) (store.Role, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case string(store.RoleOwner):
		return store.RoleOwner, true
	case string(store.RoleAdmin):
		return store.RoleAdmin, true
	}
	return "", false
}

func (a *API) createAccountToken(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	var req struct{ Role string }
	if err := a.decode(r, &req); err != nil {
		return err
	}
	role, ok := parseRole(req.Role)
	if !ok {
		return unprocessable(codeInvalidField, "Role %q is neither owner nor admin.", req.Role)
	}
	if role == store.RoleOwner && p.Role != store.RoleOwner {
		return unprocessable(codeNoDeleteAccess, "Only an owner token may create owner tokens; this token's role is %s.", p.Role)
	}
	var rec store.Token
	tok, err := auth.CreateToken(func(nt store.NewToken) error {
		var err error
		rec, err = a.cfg.Store.AddAccountToken(p.AccountID, role, nt, a.cfg.Now())
		return err
	})
	if err != nil {
		return err
	}
	a.cfg.Logger.Info("api: account token created", "account", p.AccountID, "token", rec.Prefix, "role", string(role), "by", p.Prefix)
	writeJSON(w, http.StatusOK, NewTokenInfo{Token: tok, Prefix: rec.Prefix, Role: string(rec.Role), CreatedAt: rec.CreatedAt})
	return nil
}

var errOwnerOnly = errors.New("owner only")

func (a *API) revokeAccountToken(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	prefix := r.PathValue("prefix")
	err := a.cfg.Store.RevokeAccountToken(p.AccountID, prefix, func(t store.Token) error {
		if t.Role == store.RoleOwner && p.Role != store.RoleOwner {
			return errOwnerOnly
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound(codeNotFound, "Token")
	case errors.Is(err, errOwnerOnly):
		return unprocessable(codeNoDeleteAccess, "Only an owner token may revoke owner tokens; this token's role is %s.", p.Role)
	case errors.Is(err, store.ErrLastOwner):
		return unprocessable(codeNoDeleteAccess, "Token %s is the account's last owner token: create another owner token first.", prefix)
	case err != nil:
		return err
	}
	a.cfg.Logger.Info("api: account token revoked", "account", p.AccountID, "token", prefix, "by", p.Prefix)
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("Token %s revoked.", prefix)})
	return nil
}
