package store

import (
	"errors"
	"fmt"
	"time"
)

// User is a person who signs in to the console: one email, one
// password, members of one or more accounts.
type User struct {
	ID           int64
	Email        string // lower case; unique
	PasswordHash string `json:",omitempty"` // argon2id (internal/password); empty until set
	TOTPSecret   string `json:",omitempty"` // the second factor's secret, when set up
	CreatedAt    time.Time
}

// Roles of a user in an account, as Postmark names them.
const (
	UserOwner  = "Owner"  // the whole account; deletes servers, manages Owners, transfers servers
	UserAdmin  = "Admin"  // the whole account
	UserMember = "Member" // only the servers granted
)

// Access to one server of a Member.
const (
	AccessAdmin  = "Admin"  // everything on the server
	AccessViewer = "Viewer" // activity and stats only
)

// ServerGrant gives a Member access to one server.
type ServerGrant struct {
	ServerID int64
	Access   string // AccessAdmin or AccessViewer
}

// Membership is a user's place in one account.
type Membership struct {
	UserID    int64
	AccountID int64
	Role      string
	Servers   []ServerGrant `json:",omitempty"` // a Member's grants
}

// Errors of users and memberships.
var (
	ErrUserExists    = errors.New("a user with this email already exists")
	ErrLastOwnerUser = errors.New("the account's last Owner cannot be removed or demoted")
)

// LastOwnerAdvice is what people are told, over the API and in the
// console, when ErrLastOwnerUser refuses a change.
const LastOwnerAdvice = "This is the account's last Owner: make another person Owner first."

// CheckMembership checks a membership's role and grants.
func CheckMembership(m Membership) error {
	switch m.Role {
	case UserOwner, UserAdmin:
		if len(m.Servers) > 0 {
			return fmt.Errorf("an %s has the whole account: grant servers to Members only", m.Role)
		}
	case UserMember:
		for _, g := range m.Servers {
			if g.Access != AccessAdmin && g.Access != AccessViewer {
				return fmt.Errorf("access %q to server %d is neither Admin nor Viewer", g.Access, g.ServerID)
			}
		}
	default:
		return fmt.Errorf("role %q is neither Owner, Admin nor Member", m.Role)
	}
	return nil
}

// KeepsAnOwner refuses a change of members that would leave an account
// with Owners without any: members are the account's memberships before,
// change the one replaced (nil: removed) for userID.
func KeepsAnOwner(members []Membership, userID int64, change *Membership) error {
	owners, was := 0, false
	for _, m := range members {
		if m.Role == UserOwner {
			owners++
			was = was || m.UserID == userID
		}
	}
	if was && owners == 1 && (change == nil || change.Role != UserOwner) {
		return ErrLastOwnerUser
	}
	return nil
}

// Users keeps the console's people and their memberships.
type Users interface {
	// CreateUser files u with a new ID, or answers ErrUserExists.
	CreateUser(u User) (User, error)
	User(id int64) (User, error)
	// UserByEmail finds a user by email, ignoring case.
	UserByEmail(email string) (User, error)
	// UpdateUser replaces a user (password, second factor).
	UpdateUser(u User) error
	// SetMembership creates or replaces a user's membership of an
	// account, refusing with ErrLastOwnerUser a change that leaves the
	// account without its last Owner (KeepsAnOwner), in one
	// transaction.
	SetMembership(m Membership) error
	// RemoveMembership removes a user from an account only (ErrNotFound
	// when not a member; ErrLastOwnerUser for its last Owner).
	RemoveMembership(accountID, userID int64) error
	// Memberships returns a user's memberships, by account.
	Memberships(userID int64) ([]Membership, error)
	// AccountMembers returns an account's memberships, by user.
	AccountMembers(accountID int64) ([]Membership, error)
	// AddSignInToken keeps a one-time sign-in link's token (its hash).
	AddSignInToken(t SignInToken) error
	// TakeSignInToken uses a token once: it is gone after, and answers
	// ErrNotFound when missing or expired at now.
	TakeSignInToken(hash string, now time.Time) (SignInToken, error)
}

// SignInToken is a one-time link for a user to set a password, kept as
// the hash of its secret.
type SignInToken struct {
	Hash    string
	UserID  int64
	Expires time.Time
}
