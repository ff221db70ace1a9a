package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/password"
	"github.com/postern/postern/store"
)

func (a *API) registerUsers() {
	a.mux.HandleFunc("GET /users", a.account(a.listUsers))
	a.mux.HandleFunc("POST /users", a.account(a.addUser))
	a.mux.HandleFunc("PUT /users/{id}", a.account(a.editUser))
	a.mux.HandleFunc("DELETE /users/{id}", a.account(a.removeUser))
}

// UserView is one person of the account.
type UserView struct {
	ID        int64
	Email     string
	Role      string // Owner, Admin or Member
	Servers   []ServerAccess
	TwoFactor bool
	// SignInURL, in the answer to POST /users for a person without a
	// password only: a one-time link to set one, valid 24 hours.
	SignInURL string `json:",omitempty"`
}

// ServerAccess is a Member's access to one server.
type ServerAccess struct {
	ServerID int64
	Access   string // Admin or Viewer
}

// UserList is the answer of GET /users.
type UserList struct {
	TotalCount int
	Users      []UserView
}

type userRequest struct {
	Email    string
	Password string
	Role     string
	Servers  []ServerAccess
}

const (
	codeUserNotFound = 1501
)

func userView(u store.User, m store.Membership) UserView {
	v := UserView{ID: u.ID, Email: u.Email, Role: m.Role, Servers: []ServerAccess{}, TwoFactor: u.TOTPSecret != ""}
	for _, g := range m.Servers {
		v.Servers = append(v.Servers, ServerAccess{ServerID: g.ServerID, Access: g.Access})
	}
	return v
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	members, err := a.cfg.Store.AccountMembers(p.AccountID)
	if err != nil {
		return err
	}
	out := UserList{Users: []UserView{}}
	for _, m := range members {
		u, err := a.cfg.Store.User(m.UserID)
		if err != nil {
			return err
		}
		out.Users = append(out.Users, userView(u, m))
	}
	out.TotalCount = len(out.Users)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// membership checks a request's role and grants for the account: the
// servers must be the account's, and only an Owner token makes Owners.
func (a *API) membership(p accountPrincipal, userID int64, req userRequest) (store.Membership, error) {
	m := store.Membership{UserID: userID, AccountID: p.AccountID, Role: req.Role}
	for _, g := range req.Servers {
		srv, err := a.cfg.Store.Server(g.ServerID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && srv.AccountID != p.AccountID) {
			return m, unprocessable(codeInvalidField, "Server %d is not a server of this account.", g.ServerID)
		}
		if err != nil {
			return m, err
		}
		m.Servers = append(m.Servers, store.ServerGrant{ServerID: g.ServerID, Access: g.Access})
	}
	if err := store.CheckMembership(m); err != nil {
		return m, unprocessable(codeInvalidField, "%s.", sentence(err))
	}
	if m.Role == store.UserOwner && p.Role != store.RoleOwner {
		return m, errorf(http.StatusForbidden, codeInvalidField, "Only an owner token manages Owners.")
	}
	return m, nil
}

func (a *API) addUser(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	var req userRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	addr, err := mail.ParseAddress(req.Email)
	if err != nil || addr.Address != strings.TrimSpace(req.Email) {
		return unprocessable(codeInvalidField, "Email must be an email address, got %q.", req.Email)
	}
	u, err := a.cfg.Store.UserByEmail(addr.Address)
	isNew := errors.Is(err, store.ErrNotFound)
	if err != nil && !isNew {
		return err
	}
	if !isNew {
		if _, err := a.findMember(p.AccountID, u.ID); err == nil {
			return unprocessable(codeInvalidField, "%s is already a member of this account; change the role with PUT /users/%d.", u.Email, u.ID)
		}
	}
	m, err := a.membership(p, 0, req)
	if err != nil {
		return err
	}
	if isNew {
		u = store.User{Email: addr.Address, CreatedAt: a.cfg.Now().UTC()}
		if req.Password != "" {
			if u.PasswordHash, err = password.Hash(req.Password); err != nil {
				return unprocessable(codeInvalidField, "Password: %v.", err)
			}
		}
		if u, err = a.cfg.Store.CreateUser(u); err != nil {
			return err
		}
	}
	// An existing person keeps their password: this is a second
	// membership of the same user.
	m.UserID = u.ID
	if err := a.cfg.Store.SetMembership(m); err != nil {
		return err
	}
	out := userView(u, m)
	if u.PasswordHash == "" {
		if out.SignInURL, err = a.signInURL(u.ID); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// signInURL makes a one-time link for user to set a password in the
// console; the store keeps only its hash.
func (a *API) signInURL(userID int64) (string, error) {
	token, err := auth.NewSignInToken(a.cfg.Store, userID, a.cfg.Now())
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(a.cfg.ConsoleURL, "/") + auth.SignInPath + "?token=" + token, nil
}

// findMember is the account's membership of user id, or the answer of a
// person who is not one (404: nothing says whether they exist).
func (a *API) findMember(accountID, userID int64) (store.Membership, error) {
	members, err := a.cfg.Store.AccountMembers(accountID)
	if err != nil {
		return store.Membership{}, err
	}
	for _, m := range members {
		if m.UserID == userID {
			return m, nil
		}
	}
	return store.Membership{}, notFound(codeUserNotFound, "User")
}

// memberToManage is the user of the path's id as a member of p's account,
// when p may change them: only an owner token manages Owners.
func (a *API) memberToManage(r *http.Request, p accountPrincipal) (int64, error) {
	id, ok := pathID(r, "id")
	if !ok {
		return 0, notFound(codeUserNotFound, "User")
	}
	m, err := a.findMember(p.AccountID, id)
	if err != nil {
		return 0, err
	}
	if m.Role == store.UserOwner && p.Role != store.RoleOwner {
		return 0, errorf(http.StatusForbidden, codeInvalidField, "Only an owner token manages Owners.")
	}
	return id, nil
}

func (a *API) editUser(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	id, err := a.memberToManage(r, p)
	if err != nil {
		return err
	}
	var req userRequest
	if err := a.decode(r, &req); err != nil {
		return err
	}
	m, err := a.membership(p, id, req)
	if err != nil {
		return err
	}
	if err := a.cfg.Store.SetMembership(m); errors.Is(err, store.ErrLastOwnerUser) {
		return unprocessable(codeInvalidField, store.LastOwnerAdvice)
	} else if err != nil {
		return err
	}
	u, err := a.cfg.Store.User(id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, userView(u, m))
	return nil
}

func (a *API) removeUser(w http.ResponseWriter, r *http.Request, p accountPrincipal) error {
	id, err := a.memberToManage(r, p)
	if err != nil {
		return err
	}
	switch err := a.cfg.Store.RemoveMembership(p.AccountID, id); {
	case errors.Is(err, store.ErrLastOwnerUser):
		return unprocessable(codeInvalidField, store.LastOwnerAdvice)
	case errors.Is(err, store.ErrNotFound):
		return notFound(codeUserNotFound, "User")
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, Error{ErrorCode: 0, Message: fmt.Sprintf("User %d removed from this account.", id)})
	return nil
}
