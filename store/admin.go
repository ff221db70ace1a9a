package store

import (
	"errors"
	"fmt"
)

// Errors of the administration methods.
var (
	// ErrHasServers refuses to delete an account that still has servers
	// or domains.
	ErrHasServers = errors.New("store: the account still has servers or domains")
	// ErrOperator refuses to delete the operator account.
	ErrOperator = errors.New("store: the operator account cannot be deleted")
	// ErrLastOwner refuses to revoke an account's last owner token, which
	// would leave nobody able to manage the account.
	ErrLastOwner = errors.New("store: the account's last owner token cannot be revoked")
	// ErrDuplicateName is the ErrDuplicate of a server name another
	// server of the account has.
	ErrDuplicateName = fmt.Errorf("%w: server name taken", ErrDuplicate)
)
