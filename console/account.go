package console

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/postern/postern/internal/password"
	"github.com/postern/postern/store"
)

func (c *Console) registerAccount() {
	c.mux.HandleFunc("GET /account", c.signedIn(c.accountPage))
	c.mux.HandleFunc("POST /account/switch", c.signedIn(c.switchAccount))
	c.mux.HandleFunc("POST /account/twofactor", c.signedIn(c.requireTwoFactor))
	c.mux.HandleFunc("POST /account/password", c.signedIn(c.changePassword))
	c.mux.HandleFunc("POST /account/transfer", c.signedIn(c.transferServer))
}

type accountPage struct {
	// Servers are those an Owner may transfer, Targets the other
	// accounts the person owns.
	Servers []store.Server
	Targets []store.Account
	Result  *store.TransferResult
	Error   string
	Notice  string
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	return c.showAccount(w, v, http.StatusOK, accountPage{})
}

func (c *Console) showAccount(w http.ResponseWriter, v *viewer, status int, p accountPage) error {
	if v.IsOwner() {
		for _, a := range v.Accounts {
			if a.ID != v.Account.ID && v.Roles[a.ID] == store.UserOwner {
				p.Targets = append(p.Targets, a)
			}
		}
		if len(p.Targets) > 0 {
			var err error
			if p.Servers, err = c.cfg.Store.ListServers(v.Account.ID); err != nil {
				return err
			}
			store.SortServers(p.Servers)
		}
	}
	c.render(w, v, status, "account", "Account", p)
	return nil
}

// switchAccount moves the session to another account of the person's;
// an account they are not in is not found.
func (c *Console) switchAccount(w http.ResponseWriter, r *http.Request, v *viewer) error {
	id, err := strconv.ParseInt(r.PostFormValue("account"), 10, 64)
	if err != nil || v.Roles[id] == "" {
		return errNotFound
	}
	v.Session.AccountID = id
	if err := c.cfg.Store.UpdateSession(v.Session); err != nil {
		return err
	}
	redirect(w, r, "/")
	return nil
}

// requireTwoFactor lets an Owner require a second factor of everyone in
// the account.
func (c *Console) requireTwoFactor(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if !v.IsOwner() {
		return forbidden("Only an Owner of the account decides this.")
	}
	a := v.Account
	a.RequireTwoFactor = r.PostFormValue("require") == "on"
	if err := c.cfg.Store.UpdateAccount(a); err != nil {
		return err
	}
	c.cfg.Logger.Info("console: two-factor requirement changed", "account", a.ID, "require", a.RequireTwoFactor, "by", v.User.ID)
	redirect(w, r, "/account")
	return nil
}

// changePassword sets a new password for the person, who gives the
// current one; every session of theirs ends, and this browser gets a new
// one.
func (c *Console) changePassword(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if ok, err := password.Verify(r.PostFormValue("current"), v.User.PasswordHash); err != nil || !ok {
		return c.showAccount(w, v, http.StatusUnprocessableEntity, accountPage{Error: "The current password is wrong."})
	}
	next := r.PostFormValue("password")
	if next != r.PostFormValue("password2") {
		return c.showAccount(w, v, http.StatusUnprocessableEntity, accountPage{Error: "The two new passwords differ."})
	}
	hash, err := password.Hash(next)
	if err != nil {
		return c.showAccount(w, v, http.StatusUnprocessableEntity, accountPage{Error: sentence(err) + "."})
	}
	u := v.User
	u.PasswordHash = hash
	if err := c.setPassword(u); err != nil {
		return err
	}
	if err := c.startSession(w, u.ID, v.Account.ID); err != nil {
		return err
	}
	c.cfg.Logger.Info("console: password changed", "user", u.ID)
	redirect(w, r, "/account")
	return nil
}

// transferServer moves a server of the account to another account that
// the person also owns, with its data (store.TransferServer).
func (c *Console) transferServer(w http.ResponseWriter, r *http.Request, v *viewer) error {
	id, _ := strconv.ParseInt(r.PostFormValue("server"), 10, 64)
	srv, _, err := c.serverByID(v, id)
	if err != nil {
		return err
	}
	to, err := strconv.ParseInt(r.PostFormValue("account"), 10, 64)
	if !v.IsOwner() || err != nil || v.Roles[to] != store.UserOwner || to == v.Account.ID {
		return forbidden("Only an Owner of both accounts transfers a server.")
	}
	res, err := c.cfg.Store.TransferServer(store.Transfer{ServerID: srv.ID, FromAccount: v.Account.ID, ToAccount: to,
		CopyDomains: r.PostFormValue("copy_domains") == "on"}, c.cfg.Now())
	var capErr *store.CapError
	switch {
	case errors.Is(err, store.ErrDuplicateName):
		return c.showAccount(w, v, http.StatusUnprocessableEntity, accountPage{Error: fmt.Sprintf("The other account already has a server named %s; rename one first.", srv.Name)})
	case errors.As(err, &capErr):
		return c.showAccount(w, v, http.StatusUnprocessableEntity, accountPage{Error: sentence(err) + "."})
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console: server transferred", "server", srv.ID, "from", v.Account.ID, "to", to, "by", v.User.ID)
	return c.showAccount(w, v, http.StatusOK, accountPage{Result: &res})
}
