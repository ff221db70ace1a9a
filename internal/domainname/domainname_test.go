package domainname_test

import (
	"strings"
	"testing"

	"github.com/postern/postern/internal/domainname"
)

func TestValidation(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, c := range []struct {
		name                 string
		valid, mail, address bool
	}{
		{"example.com", true, true, true},
		{"Example.COM.", true, true, true},
		{"xn--caf-dma.example", true, true, true},
		{"localhost", true, false, true},
		{"a-b.c-d.example", true, true, true},
		{"-a.example", false, false, false},
		{"a-.example", false, false, false},
		{"a..example", false, false, false},
		{"", false, false, false},
		{".", false, false, false},
		{"192.0.2.1", true, false, true},
		{"café.example", false, false, true},
		{"a_b.example", false, false, false},
		{"[192.0.2.1]", false, false, true},
		{"[IPv6:2001:db8::1]", false, false, true},
		{"[not an ip]", false, false, false},
		{long + ".example", true, true, true},
		{long + "a.example", false, false, false},
		{strings.Repeat(long+".", 4) + "com", false, false, false},
	} {
		if got := domainname.Valid(c.name); got != c.valid {
			t.Errorf("Valid(%q) = %v", c.name, got)
		}
		if got := domainname.ValidMail(c.name); got != c.mail {
			t.Errorf("ValidMail(%q) = %v", c.name, got)
		}
		if got := domainname.ValidAddress(c.name); got != c.address {
			t.Errorf("ValidAddress(%q) = %v", c.name, got)
		}
	}
	if got := domainname.Normalize(" Example.COM. "); got != "example.com" {
		t.Errorf("Normalize: %q", got)
	}
}
