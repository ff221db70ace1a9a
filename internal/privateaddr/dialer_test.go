package privateaddr

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestDialerRefusesPrivateAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	resolve := func(ctx context.Context, host string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	d := &Dialer{Resolve: resolve}
	for _, addr := range []string{"rebind.example:" + port, "127.0.0.1:" + port, "[::1]:" + port} {
		if c, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, ErrPrivate) {
			if c != nil {
				c.Close()
			}
			t.Errorf("dial %s: %v, want ErrPrivate", addr, err)
		}
	}
	d.AllowPrivate = true
	c, err := d.DialContext(context.Background(), "tcp", "rebind.example:"+port)
	if err != nil {
		t.Fatalf("with AllowPrivate: %v", err)
	}
	c.Close()
}
