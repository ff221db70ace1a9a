package relay

import "fmt"

// HostError is a failure to use one server at all: it could not be
// reached, it refused the session at greeting, EHLO, STARTTLS or AUTH, or
// TLS could not be set up. No transaction began, so another server may be
// tried, and no recipient bounces because of it.
type HostError struct {
	Host string // the server's name
	Addr string // the address dialed
	Err  error
}

func (e *HostError) Error() string { return fmt.Sprintf("%s [%s]: %v", e.Host, e.Addr, e.Err) }
func (e *HostError) Unwrap() error { return e.Err }
