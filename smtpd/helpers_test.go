package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// testServer is a real listener on 127.0.0.1 over a real store in a
// temporary directory, initialised like `postern init`.
type testServer struct {
	Addr      string // STARTTLS listener
	TLSAddr   string // implicit TLS listener
	Store     *bolt.Store
	Inst      auth.Installation
	ClientTLS *tls.Config // trusts the server's certificate
	srv       *Server
	dir       string
}

type testOptions struct {
	mutate       func(*Config) // adjusts the listener's config
	storeOptions bolt.Options  // e.g. BeforeCommit for fault injection
	noTLS        bool          // no certificate: no STARTTLS, no implicit TLS
	dir          string        // the store's directory (a small filesystem, say); default t.TempDir()
	// live makes ts.Inst a Live server (sender policy any), whose messages
	// are queued for the relay; by default it is init's Sandbox server,
	// whose messages are recorded as delivered at once.
	live bool
}

// newTestServer starts a listener and stops it, checking the store's
// consistency, when the test ends.
func newTestServer(t testing.TB, opts testOptions) *testServer {
	t.Helper()
	dir := opts.dir
	if dir == "" {
		dir = t.TempDir()
	}
	st, err := bolt.Open(filepath.Join(dir, bolt.FileName), opts.storeOptions)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Store: st, Inst: inst, dir: dir}
	cfg := Config{
		Hostname:    "mx.test.example",
		Store:       st,
		Credentials: auth.NewAuthenticator(st),
		Throttle:    auth.NewThrottle(auth.ThrottleConfig{Failures: 5, Window: 5 * time.Minute}),
	}
	if opts.live {
		token := auth.NewToken()
		srv, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "Live", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
			auth.StoreToken(token), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ts.Inst.ServerID, ts.Inst.ServerName, ts.Inst.ServerToken = srv.ID, srv.Name, token
		cfg.SenderPolicy = store.PolicyAny
	}
	if !opts.noTLS {
		c := &config.Config{DataDir: dir, Hostname: "localhost"}
		tc, err := c.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig = tc
		pool := x509.NewCertPool()
		leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		pool.AddCert(leaf)
		ts.ClientTLS = &tls.Config{RootCAs: pool, ServerName: "localhost"}
	}
	if opts.mutate != nil {
		opts.mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.srv = srv
	done := make(chan error, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.Addr = ln.Addr().String()
	go func() { done <- srv.Serve(ln) }()
	serving := 1
	if cfg.TLSConfig != nil {
		tln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ts.TLSAddr = tln.Addr().String()
		go func() { done <- srv.ServeTLS(tln) }()
		serving++
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for i := 0; i < serving; i++ {
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		// A test may have closed the store itself to reopen it.
		if err := st.Check(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("store consistency: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("store close: %v", err)
		}
	})
	return ts
}

// rawClient speaks SMTP by hand, to assert exact replies.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	text *textproto.Conn
}

// dialRaw connects and reads the greeting.
func dialRaw(t testing.TB, addr string) (*rawClient, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newRawClient(t, conn)
}

func newRawClient(t testing.TB, conn net.Conn) (*rawClient, string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &rawClient{t: t, conn: conn, text: textproto.NewConn(conn)}
	t.Cleanup(func() { c.conn.Close() })
	return c, c.readReply()
}

// readReply reads one (possibly multi-line) reply and returns it with the
// lines joined by "\n".
func (c *rawClient) readReply() string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.text.ReadLine()
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, lines)
		}
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// cmd sends a command line and returns the reply.
func (c *rawClient) cmd(format string, args ...any) string {
	c.t.Helper()
	if err := c.text.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("sending %q: %v", fmt.Sprintf(format, args...), err)
	}
	return c.readReply()
}

// expect sends a command and fails the test unless the reply starts with want.
func (c *rawClient) expect(want string, format string, args ...any) string {
	c.t.Helper()
	got := c.cmd(format, args...)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want prefix %q", fmt.Sprintf(format, args...), got, want)
	}
	return got
}

// greeted is a raw client after EHLO.
func greeted(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, greeting := dialRaw(t, addr)
	if !strings.HasPrefix(greeting, "220 ") {
		t.Fatalf("greeting %q", greeting)
	}
	c.expect("250", "EHLO client.test")
	return c
}

// authenticated is a raw client after AUTH PLAIN with token (plaintext
// from loopback, which the default policy allows).
func authenticated(t testing.TB, addr, token string) *rawClient {
	t.Helper()
	c := greeted(t, addr)
	c.expect("235 2.7.0 Authentication successful", "AUTH PLAIN %s", plainIR(token, token))
	return c
}

// plainIR is the base64 initial response of AUTH PLAIN.
func plainIR(username, password string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + username + "\x00" + password))
}

// sendData sends DATA, the message (dot-stuffed by the caller if needed),
// and the final dot, returning the final reply.
func (c *rawClient) sendData(msg string) string {
	c.t.Helper()
	c.expect("354", "DATA")
	w := bufio.NewWriter(c.conn)
	msg = strings.ReplaceAll(msg, "\r\n", "\n")
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	if !strings.HasSuffix(msg, "\r\n") {
		msg += "\r\n"
	}
	w.WriteString(msg)
	w.WriteString(".\r\n")
	if err := w.Flush(); err != nil {
		c.t.Fatal(err)
	}
	return c.readReply()
}

// queuedID extracts the MessageID from "250 2.0.0 OK: queued as <id>".
func queuedID(t testing.TB, reply string) string {
	t.Helper()
	const prefix = "250 2.0.0 OK: queued as "
	if !strings.HasPrefix(reply, prefix) {
		t.Fatalf("reply %q, want %q…", reply, prefix)
	}
	return strings.TrimPrefix(reply, prefix)
}

// testMessage is a small message with Postmark headers.
const testMessage = `From: "App" <app@example.com>
To: Alice <alice@example.net>, bob@example.org
Cc: carol@example.net
Bcc: secret@example.net
Subject: Hello
X-PM-Tag: welcome
X-PM-Metadata-client-id: 42
X-PM-Metadata-Color: blue
X-PM-TrackOpens: true
Message-ID: <client-chosen@example.com>

Body line one.
Body line two.
`

// newRawClientNoGreeting wraps a connection on which the greeting was
// already read (after STARTTLS).
func newRawClientNoGreeting(t testing.TB, conn net.Conn) (*rawClient, string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &rawClient{t: t, conn: conn, text: textproto.NewConn(conn)}
	t.Cleanup(func() { c.conn.Close() })
	return c, ""
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
