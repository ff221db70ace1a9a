// Package domainname is the one place domain names are normalised and
// validated: in settings, in the API, on the command line and in SMTP
// addresses.
package domainname

import (
	"net"
	"strings"
)

// Normalize is the form domains are kept and compared in: trimmed, lower
// case, without a trailing dot.
func Normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// rules are what a validation allows beyond LDH labels.
type rules struct {
	utf8      bool // labels may hold UTF-8 (SMTPUTF8 addresses)
	minLabels int
	// numericTop allows a top label of digits only, which makes the
	// name look like, and resolvers read it as, an IP address.
	numericTop bool
}

// valid reports whether name, less an optional trailing dot, is 1 to 253
// octets of labels of 1 to 63 letters, digits and hyphens, no label
// beginning or ending with a hyphen, under r.
func valid(name string, r rules) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	labels := strings.Split(name, ".")
	if len(labels) < r.minLabels {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (r.utf8 && c >= 0x80)) {
				return false
			}
		}
	}
	return r.numericTop || strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// Valid reports whether name is a DNS host name (internationalised names
// in their xn-- form), in any case, with an optional trailing dot: a
// setting's host name.
func Valid(name string) bool { return valid(name, rules{minLabels: 1, numericTop: true}) }

// ValidMail reports whether name is a domain mail can be sent as or to:
// a host name of at least two labels whose top label is not all digits
// (an IP address is not a domain).
func ValidMail(name string) bool { return valid(name, rules{minLabels: 2}) }

// ValidAddress reports whether name is the domain of an address in an
// SMTP envelope: a host name whose labels may also hold UTF-8
// (SMTPUTF8, RFC 6531), or an address literal ([192.0.2.1],
// [IPv6:2001:db8::1]).
func ValidAddress(name string) bool {
	if len(name) > 255 || name == "" {
		return false
	}
	if name[0] == '[' {
		return name[len(name)-1] == ']' && net.ParseIP(strings.TrimPrefix(name[1:len(name)-1], "IPv6:")) != nil
	}
	return valid(name, rules{utf8: true, minLabels: 1, numericTop: true})
}
