package bench

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/smtpd"
	"github.com/postern/postern/store/bolt"
)

// startPostern runs Postern's real intake over a store in a temporary
// directory, initialised like `postern init`, and returns its address,
// the server token and how many messages it has committed.
func startPostern(t *testing.T) (string, string, *atomic.Int64) {
	t.Helper()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tc, err := (&config.Config{DataDir: dir, Hostname: "localhost"}).TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	srv, err := smtpd.New(smtpd.Config{
		Hostname:    "mx.test.example",
		Store:       st,
		Credentials: auth.NewAuthenticator(st),
		Throttle:    auth.NewThrottle(auth.ThrottleConfig{Failures: 1000, Window: time.Minute}),
		TLSConfig:   tc,
		Accepted:    func(int64, string) { accepted.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})
	return ln.Addr().String(), inst.ServerToken, &accepted
}

// TestRunPostern drives Postern's intake with its token: over STARTTLS
// and in plaintext (loopback), one connection per few messages; a wrong
// token is refused with AUTH's reply code.
func TestRunPostern(t *testing.T) {
	addr, token, accepted := startPostern(t)
	for _, o := range []Options{
		{Addr: addr, Sessions: 4, Messages: 60, Token: token, StartTLS: true, Insecure: true},
		{Addr: addr, Sessions: 4, Messages: 60, Token: token, PerConn: 5},
		{Addr: addr, Sessions: 2, Messages: 20, Token: token, Client: "gosmtp", StartTLS: true, TLS: &tls.Config{InsecureSkipVerify: true}},
		{Addr: addr, Sessions: 2, Messages: 20, Token: token, Rate: 200},
	} {
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != o.Messages || res.Sent != o.Messages || res.Errors != 0 || len(res.Refused) != 0 {
			t.Errorf("%+v: result %+v", o, res)
		}
	}
	if n := accepted.Load(); n != 160 {
		t.Errorf("Postern committed %d messages, want 160", n)
	}

	res, err := Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 3, Token: "not-a-token"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Errors != 0 || !reflect.DeepEqual(res.Refused, map[string]int64{"535 5.7.8": 3}) {
		t.Errorf("wrong token: %+v", res)
	}
	// Without AUTH, Postern refuses MAIL.
	res, err = Run(context.Background(), Options{Addr: addr, Sessions: 1, Messages: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Errors != 0 || len(res.Refused) != 1 {
		t.Errorf("no token: %+v", res)
	}
	for code, n := range res.Refused {
		if code[0] != '5' || n != 2 {
			t.Errorf("no token: refused %q × %d", code, n)
		}
	}
}
