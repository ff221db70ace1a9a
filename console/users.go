package console

import (
	"errors"
	"net/http"
	"net/mail"
	"strconv"
	"strings"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

func (c *Console) registerUsers() {
	c.mux.HandleFunc("GET /users", c.signedIn(c.usersPage))
	c.mux.HandleFunc("POST /users", c.signedIn(c.inviteUser))
	c.mux.HandleFunc("POST /users/{id}", c.signedIn(c.editUser))
	c.mux.HandleFunc("POST /users/{id}/remove", c.signedIn(c.removeUser))
}

// member is one person of the account on the users page.
type member struct {
	User store.User
	store.Membership
	Access map[int64]string // a Member's grants by server
}

type usersPage struct {
	Members []member
	Servers []store.Server
	Roles   []string // the roles v may give
	// Invited is the person just invited without a password, and Link
	// their one-time link to set one, shown this once.
	Invited, Link string
	Error         string
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	return c.showUsers(w, v, http.StatusOK, usersPage{})
}

func (c *Console) showUsers(w http.ResponseWriter, v *viewer, status int, p usersPage) error {
	ms, err := c.cfg.Store.AccountMembers(v.Account.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		u, err := c.cfg.Store.User(m.UserID)
		if err != nil {
			return err
		}
		access := map[int64]string{}
		for _, g := range m.Servers {
			access[g.ServerID] = g.Access
		}
		p.Members = append(p.Members, member{User: u, Membership: m, Access: access})
	}
	if p.Servers, err = c.cfg.Store.ListServers(v.Account.ID); err != nil {
		return err
	}
	store.SortServers(p.Servers)
	p.Roles = []string{store.UserAdmin, store.UserMember}
	if v.IsOwner() {
		p.Roles = append([]string{store.UserOwner}, p.Roles...)
	}
	c.render(w, v, status, "users", "People", p)
	return nil
}

// membershipForm reads a role and grants (access-<server ID> = Admin or
// Viewer) for the account, with the API's rules: the servers are the
// account's, and only an Owner makes Owners.
func (c *Console) membershipForm(r *http.Request, v *viewer, userID int64) (store.Membership, error) {
	m := store.Membership{UserID: userID, AccountID: v.Account.ID, Role: r.PostFormValue("role")}
	if m.Role == store.UserMember {
		servers, err := c.cfg.Store.ListServers(v.Account.ID)
		if err != nil {
			return m, err
		}
		for _, srv := range servers {
			if a := r.PostFormValue("access-" + strconv.FormatInt(srv.ID, 10)); a != "" {
				m.Servers = append(m.Servers, store.ServerGrant{ServerID: srv.ID, Access: a})
			}
		}
	}
	if err := store.CheckMembership(m); err != nil {
		return m, invalid("%s.", sentence(err))
	}
	if m.Role == store.UserOwner && !v.IsOwner() {
		return m, forbidden("Only an Owner makes Owners.")
	}
	return m, nil
}

func (c *Console) inviteUser(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		return c.showUsers(w, v, http.StatusUnprocessableEntity, usersPage{Error: "Enter an email address like someone@example.com."})
	}
	m, err := c.membershipForm(r, v, 0)
	if err != nil {
		return err
	}
	u, err := c.cfg.Store.UserByEmail(email)
	isNew := errors.Is(err, store.ErrNotFound)
	switch {
	case isNew:
		if u, err = c.cfg.Store.CreateUser(store.User{Email: strings.ToLower(email), CreatedAt: c.cfg.Now().UTC()}); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		members, err := c.cfg.Store.AccountMembers(v.Account.ID)
		if err != nil {
			return err
		}
		for _, o := range members {
			if o.UserID == u.ID {
				return c.showUsers(w, v, http.StatusUnprocessableEntity, usersPage{Error: u.Email + " is already a member of this account."})
			}
		}
	}
	// A person who has an account elsewhere keeps their password: this
	// is a second membership of the same user.
	m.UserID = u.ID
	if err := c.cfg.Store.SetMembership(m); err != nil {
		return err
	}
	c.cfg.Logger.Info("console: person added", "account", v.Account.ID, "user", u.ID, "role", m.Role, "by", v.User.ID)
	p := usersPage{}
	if u.PasswordHash == "" {
		token, err := auth.NewSignInToken(c.cfg.Store, u.ID, c.cfg.Now())
		if err != nil {
			return err
		}
		p.Invited, p.Link = u.Email, c.baseURL(r)+auth.SignInPath+"?token="+token
	}
	return c.showUsers(w, v, http.StatusOK, p)
}

// baseURL is the console's address as the request reached it.
func (c *Console) baseURL(r *http.Request) string {
	scheme := "http"
	if c.cfg.Secure {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// otherMember is the account's membership of the path's person, whom v
// may change: errNotFound for anyone else, and only an Owner changes an
// Owner.
func (c *Console) otherMember(r *http.Request, v *viewer) (store.Membership, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return store.Membership{}, errNotFound
	}
	members, err := c.cfg.Store.AccountMembers(v.Account.ID)
	if err != nil {
		return store.Membership{}, err
	}
	for _, m := range members {
		if m.UserID == id {
			if m.Role == store.UserOwner && !v.IsOwner() {
				return m, forbidden("Only an Owner changes an Owner.")
			}
			return m, nil
		}
	}
	return store.Membership{}, errNotFound
}

func (c *Console) editUser(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	old, err := c.otherMember(r, v)
	if err != nil {
		return err
	}
	m, err := c.membershipForm(r, v, old.UserID)
	if err != nil {
		return err
	}
	if err := c.cfg.Store.SetMembership(m); errors.Is(err, store.ErrLastOwnerUser) {
		return c.showUsers(w, v, http.StatusUnprocessableEntity, usersPage{Error: store.LastOwnerAdvice})
	} else if err != nil {
		return err
	}
	c.cfg.Logger.Info("console: person changed", "account", v.Account.ID, "user", m.UserID, "role", m.Role, "by", v.User.ID)
	redirect(w, r, "/users")
	return nil
}

func (c *Console) removeUser(w http.ResponseWriter, r *http.Request, v *viewer) error {
	if err := accountWide(v); err != nil {
		return err
	}
	old, err := c.otherMember(r, v)
	if err != nil {
		return err
	}
	switch err := c.cfg.Store.RemoveMembership(v.Account.ID, old.UserID); {
	case errors.Is(err, store.ErrLastOwnerUser):
		return c.showUsers(w, v, http.StatusUnprocessableEntity, usersPage{Error: store.LastOwnerAdvice})
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	c.cfg.Logger.Info("console: person removed", "account", v.Account.ID, "user", old.UserID, "by", v.User.ID)
	if old.UserID == v.User.ID {
		redirect(w, r, "/signin")
		return nil
	}
	redirect(w, r, "/users")
	return nil
}
