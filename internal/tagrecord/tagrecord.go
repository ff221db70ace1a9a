// Package tagrecord reads the versioned tag lists that mail standards
// publish in DNS TXT records, "v=STSv1; id=…;" (MTA-STS, RFC 8461) and
// "v=TLSRPTv1; rua=…" (TLS-RPT, RFC 8460): the version first, then
// key=value fields separated by semicolons.
package tagrecord

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one key=value of a record, trimmed of spaces and tabs.
type Field struct{ Key, Value string }

// ErrNone says no record, or more than one, starts with the version:
// either way the name publishes no usable record.
var ErrNone = errors.New("no record")

// Find picks the record of version among a name's TXT records: those
// that do not start with "v=<version>" are other standards'; exactly
// one must remain.
func Find(txts []string, version string) (string, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v="+version) {
			found = append(found, t)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("%w: %d records start with v=%s", ErrNone, len(found), version)
	}
	return found[0], nil
}

// Parse reads a record whose first field must be v=<version>, and
// returns the fields after it. A trailing semicolon is allowed; an empty
// field elsewhere or one without "=" is an error.
func Parse(txt, version string) ([]Field, error) {
	parts := strings.Split(txt, ";")
	var out []Field
	for i, p := range parts {
		p = strings.Trim(p, " \t")
		if p == "" && i == len(parts)-1 && i > 0 {
			break
		}
		k, v, ok := strings.Cut(p, "=")
		k, v = strings.Trim(k, " \t"), strings.Trim(v, " \t")
		if !ok || k == "" {
			return nil, fmt.Errorf("field %q is not key=value", p)
		}
		if i == 0 {
			if k != "v" || v != version {
				return nil, fmt.Errorf("starts with %q, not v=%s", p, version)
			}
			continue
		}
		out = append(out, Field{k, v})
	}
	return out, nil
}
