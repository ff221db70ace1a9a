package privateaddr

import (
	"net/netip"
	"testing"
)

func TestIs(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255",
		"::1", "::", "fe80::1", "fd00::1", "fc00::5", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.1.2.3",
		"fe80::1%eth0", "192.0.2.7", "2001:db8::1",
	} {
		if !Is(netip.MustParseAddr(s)) {
			t.Errorf("%s: not private, want private", s)
		}
	}
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "172.32.0.1", "172.15.255.255", "100.128.0.1", "192.169.0.1",
		"2a00:1450:4001::1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
	} {
		if Is(netip.MustParseAddr(s)) {
			t.Errorf("%s: private, want public", s)
		}
	}
	if !Is(netip.Addr{}) {
		t.Error("the zero Addr is not refused")
	}
}

func TestAddressLiteral(t *testing.T) {
	tests := []struct {
		domain string
		want   string // "" if not an address literal
	}{
		{"[127.0.0.1]", "127.0.0.1"},
		{"[IPv6:2001:db8::25]", "2001:db8::25"},
		{"[ipv6:2001:db8::25]", "2001:db8::25"}, // as domainname.Normalize leaves it
		{"[2001:db8::25]", "2001:db8::25"},
		{"[IPv6:::ffff:192.0.2.1]", "192.0.2.1"},
		{"[IPv6:192.0.2.1]", ""},
		{"[fe80::1%eth0]", ""},
		{"[example.net]", ""},
		{"[]", ""},
		{"127.0.0.1", ""},
		{"example.net", ""},
	}
	for _, tt := range tests {
		ip, ok := AddressLiteral(tt.domain)
		if got := ""; ok {
			got = ip.String()
			if got != tt.want {
				t.Errorf("AddressLiteral(%q) = %v, want %q", tt.domain, ip, tt.want)
			}
		} else if tt.want != "" {
			t.Errorf("AddressLiteral(%q): not a literal, want %s", tt.domain, tt.want)
		}
	}
}
