package smtpd

// Real SMTP clients against the real listener: Go's net/smtp, go-smtp's
// client, swaks and Python's smtplib. They check that what applications
// actually send (their AUTH exchanges, their TLS, their pipelining and
// line endings) gets the replies of the design's table.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	netsmtp "net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/store"
)

// clientIOTimeout bounds every client conversation, only so that a broken
// server fails the test instead of hanging it.
const clientIOTimeout = 30 * time.Second

// credentials is one way of presenting the server token.
type credentials struct {
	name     string
	mech     string // sasl.Plain or sasl.Login
	username string
	password string
}

// tokenCredentials lists the ways the design accepts a server token: as
// username and password (swaks, legacy apps), as username only, as
// password only; with PLAIN and with LOGIN.
func tokenCredentials(token string) []credentials {
	var out []credentials
	for _, mech := range []string{sasl.Plain, sasl.Login} {
		out = append(out,
			credentials{mech + "/both", mech, token, token},
			credentials{mech + "/username-only", mech, token, "x"},
			credentials{mech + "/password-only", mech, "anything", token},
		)
	}
	return out
}

// clientMessage is a message as an application writes it, with CRLF line
// endings.
func clientMessage(subject, tag string, to []string) string {
	var b strings.Builder
	b.WriteString("From: \"Client Test\" <app@example.com>\r\n")
	b.WriteString("To: " + strings.Join(to, ", ") + "\r\n")
	b.WriteString("Subject: " + subject + "\r\n")
	if tag != "" {
		b.WriteString("X-PM-Tag: " + tag + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString("Hello from " + subject + ".\r\n")
	return b.String()
}

// checkStored fails unless the message id is in the store with the
// subject, tag and envelope recipients given, and its raw MIME went over
// TLS (when viaTLS) and kept no X-PM-* header.
func checkStored(t *testing.T, ts *testServer, id, subject, tag string, rcpts []string, viaTLS bool) store.Message {
	t.Helper()
	m, err := ts.Store.Message(ts.Inst.ServerID, id)
	if err != nil {
		t.Fatalf("message %s not in the store: %v", id, err)
	}
	if m.Subject != subject {
		t.Errorf("message %s: Subject %q, want %q", id, m.Subject, subject)
	}
	if m.Tag != tag {
		t.Errorf("message %s: Tag %q, want %q", id, m.Tag, tag)
	}
	if !slices.Equal(m.Recipients, rcpts) {
		t.Errorf("message %s: Recipients %q, want %q", id, m.Recipients, rcpts)
	}
	if m.Status != store.StatusQueued {
		t.Errorf("message %s: Status %q, want %q", id, m.Status, store.StatusQueued)
	}
	raw, err := ts.Store.RawMessage(ts.Inst.ServerID, id)
	if err != nil {
		t.Fatalf("raw message %s: %v", id, err)
	}
	header, _, _ := strings.Cut(string(raw), "\r\n\r\n")
	if strings.Contains(strings.ToLower(header), "\nx-pm-") {
		t.Errorf("message %s: an X-PM- header was stored:\n%s", id, header)
	}
	if viaTLS && !strings.Contains(header, "with ESMTPSA (TLSv1.") {
		t.Errorf("message %s: Received field does not record TLS:\n%s", id, header)
	}
	return m
}

// wantSMTPError fails unless err is a go-smtp *SMTPError with exactly the
// given reply.
func wantSMTPError(t *testing.T, err error, code int, enhanced gosmtp.EnhancedCode, msg string) {
	t.Helper()
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want *smtp.SMTPError %d %v %q", err, err, code, enhanced, msg)
	}
	if se.Code != code || se.EnhancedCode != enhanced || se.Message != msg {
		t.Fatalf("reply %d %v %q, want %d %v %q", se.Code, se.EnhancedCode, se.Message, code, enhanced, msg)
	}
}

// wantProtoError fails unless err is net/smtp's *textproto.Error with
// exactly the given reply (net/smtp keeps the enhanced code in Msg).
func wantProtoError(t *testing.T, err error, code int, msg string) {
	t.Helper()
	var pe *textproto.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *textproto.Error %d %q", err, err, code, msg)
	}
	if pe.Code != code || pe.Msg != msg {
		t.Fatalf("reply %d %q, want %d %q", pe.Code, pe.Msg, code, msg)
	}
}

// --- Go's net/smtp ---

// netsmtpLogin is the LOGIN mechanism for net/smtp, which has none. Unlike
// go-sasl's client it sends no initial response, so the server asks for the
// username first, as with most clients.
type netsmtpLogin struct{ username, password string }

func (a netsmtpLogin) Start(server *netsmtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && server.Name != "localhost" {
		return "", nil, errors.New("netsmtpLogin: refusing to send credentials in plaintext")
	}
	return "LOGIN", nil, nil
}

func (a netsmtpLogin) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(fromServer) {
	case "Username:":
		return []byte(a.username), nil
	case "Password:":
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("netsmtpLogin: unexpected challenge %q", fromServer)
}

func netsmtpAuth(c credentials) netsmtp.Auth {
	if c.mech == sasl.Login {
		return netsmtpLogin{c.username, c.password}
	}
	return netsmtp.PlainAuth("", c.username, c.password, "localhost")
}

// dialNetSMTP connects net/smtp's client over STARTTLS (to ts.Addr) or
// implicit TLS (to ts.TLSAddr) and says EHLO.
func dialNetSMTP(t *testing.T, ts *testServer, implicitTLS bool) *netsmtp.Client {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: 5 * time.Second}
	if implicitTLS {
		conn, err = tls.DialWithDialer(d, "tcp", ts.TLSAddr, ts.ClientTLS)
	} else {
		conn, err = d.Dial("tcp", ts.Addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(clientIOTimeout))
	c, err := netsmtp.NewClient(conn, "localhost")
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("netsmtp.test"); err != nil {
		t.Fatal(err)
	}
	if !implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered")
		}
		if err := c.StartTLS(ts.ClientTLS); err != nil {
			t.Fatal(err)
		}
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Fatal("no TLS")
	}
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH %q offered, want PLAIN and LOGIN", mechs)
	}
	return c
}

// netsmtpSend sends one message and returns the final reply as "250 …".
// net/smtp's Data hides the reply text, so DATA goes through c.Text.
func netsmtpSend(t *testing.T, c *netsmtp.Client, from string, rcpts []string, msg string) string {
	t.Helper()
	if err := c.Mail(from); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		t.Fatal(err)
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(354)
	c.Text.EndResponse(id)
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	w := c.Text.DotWriter()
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	code, text, err := c.Text.ReadResponse(250)
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	return fmt.Sprintf("%d %s", code, text)
}

func TestNetSMTPClient(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions{live: true})
	rcpts := []string{"alice@example.net", "bob@example.org"}
	for _, transport := range []struct {
		name     string
		implicit bool
	}{{"starttls", false}, {"implicit-tls", true}} {
		for _, cr := range tokenCredentials(ts.Inst.ServerToken) {
			t.Run(transport.name+"/"+cr.name, func(t *testing.T) {
				c := dialNetSMTP(t, ts, transport.implicit)
				if err := c.Auth(netsmtpAuth(cr)); err != nil {
					t.Fatalf("AUTH: %v", err)
				}
				subject := "net/smtp " + transport.name + " " + cr.name
				id := queuedID(t, netsmtpSend(t, c, "app@example.com", rcpts, clientMessage(subject, "netsmtp", rcpts)))
				if err := c.Quit(); err != nil {
					t.Errorf("QUIT: %v", err)
				}
				checkStored(t, ts, id, subject, "netsmtp", rcpts, true)
			})
		}
		t.Run(transport.name+"/three-messages", func(t *testing.T) {
			c := dialNetSMTP(t, ts, transport.implicit)
			if err := c.Auth(netsmtpAuth(credentials{mech: sasl.Plain, username: ts.Inst.ServerToken, password: ts.Inst.ServerToken})); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			ids := map[string]bool{}
			for i := 1; i <= 3; i++ {
				to := []string{fmt.Sprintf("rcpt%d@example.net", i)}
				subject := fmt.Sprintf("net/smtp %s message %d of 3", transport.name, i)
				id := queuedID(t, netsmtpSend(t, c, "app@example.com", to, clientMessage(subject, "", to)))
				if ids[id] {
					t.Fatalf("message %d got the ID %s again", i, id)
				}
				ids[id] = true
				checkStored(t, ts, id, subject, "", to, true)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
		})
	}
}

func TestNetSMTPClientRefusals(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions{live: true})
	wrong := store.NewMessageID()
	// Four failures in all: under the throttle's five.
	for _, cr := range []credentials{
		{"plain/unknown-token", sasl.Plain, wrong, wrong},
		{"login/unknown-token", sasl.Login, wrong, wrong},
		{"plain/account-token", sasl.Plain, ts.Inst.AccountToken, ts.Inst.AccountToken},
		{"login/account-token", sasl.Login, "anything", ts.Inst.AccountToken},
	} {
		t.Run(cr.name, func(t *testing.T) {
			c := dialNetSMTP(t, ts, false)
			// net/smtp sends QUIT itself after a failed AUTH.
			wantProtoError(t, c.Auth(netsmtpAuth(cr)), 535, "5.7.8 Authentication credentials invalid")
		})
	}
	t.Run("no-auth", func(t *testing.T) {
		c := dialNetSMTP(t, ts, true)
		wantProtoError(t, c.Mail("app@example.com"), 530, "5.7.0 Authentication required")
	})
}

// --- go-smtp's client ---

func goSASL(c credentials) sasl.Client {
	if c.mech == sasl.Login {
		// go-sasl's LOGIN sends the username as an initial response.
		return sasl.NewLoginClient(c.username, c.password)
	}
	return sasl.NewPlainClient("", c.username, c.password)
}

// dialGoSMTP connects go-smtp's client over STARTTLS or implicit TLS.
func dialGoSMTP(t *testing.T, ts *testServer, implicitTLS bool) *gosmtp.Client {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c *gosmtp.Client
	if implicitTLS {
		conn, err := tls.DialWithDialer(d, "tcp", ts.TLSAddr, ts.ClientTLS)
		if err != nil {
			t.Fatal(err)
		}
		c = gosmtp.NewClient(conn)
	} else {
		conn, err := d.Dial("tcp", ts.Addr)
		if err != nil {
			t.Fatal(err)
		}
		// go-smtp bounds each command with CommandTimeout, which can
		// only be set after NewClientStartTLS's EHLO and STARTTLS; this
		// deadline bounds those two.
		conn.SetDeadline(time.Now().Add(clientIOTimeout))
		if c, err = gosmtp.NewClientStartTLS(conn, ts.ClientTLS); err != nil {
			conn.Close()
			t.Fatal(err)
		}
	}
	c.CommandTimeout = clientIOTimeout
	c.SubmissionTimeout = clientIOTimeout
	t.Cleanup(func() { c.Close() })
	if !implicitTLS {
		if _, ok := c.TLSConnectionState(); !ok {
			t.Fatal("no TLS after STARTTLS")
		}
	}
	return c
}

// goSMTPSend sends one message and returns the final reply as "250 …".
func goSMTPSend(t *testing.T, c *gosmtp.Client, from string, rcpts []string, msg string) string {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, msg); err != nil {
		t.Fatal(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	return "250 " + resp.StatusText
}

func TestGoSMTPClient(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions{live: true})
	rcpts := []string{"carol@example.net"}
	for _, transport := range []struct {
		name     string
		implicit bool
	}{{"starttls", false}, {"implicit-tls", true}} {
		for _, cr := range tokenCredentials(ts.Inst.ServerToken) {
			t.Run(transport.name+"/"+cr.name, func(t *testing.T) {
				c := dialGoSMTP(t, ts, transport.implicit)
				if ok, _ := c.Extension("AUTH"); !ok || !c.SupportsAuth(cr.mech) {
					t.Fatalf("AUTH %s not offered", cr.mech)
				}
				if err := c.Auth(goSASL(cr)); err != nil {
					t.Fatalf("AUTH: %v", err)
				}
				subject := "go-smtp " + transport.name + " " + cr.name
				id := queuedID(t, goSMTPSend(t, c, "app@example.com", rcpts, clientMessage(subject, "gosmtp", rcpts)))
				if err := c.Quit(); err != nil {
					t.Errorf("QUIT: %v", err)
				}
				checkStored(t, ts, id, subject, "gosmtp", rcpts, true)
			})
		}
		t.Run(transport.name+"/three-messages", func(t *testing.T) {
			c := dialGoSMTP(t, ts, transport.implicit)
			if err := c.Auth(goSASL(credentials{mech: sasl.Login, username: ts.Inst.ServerToken, password: ts.Inst.ServerToken})); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			ids := map[string]bool{}
			for i := 1; i <= 3; i++ {
				to := []string{fmt.Sprintf("first%d@example.net", i), fmt.Sprintf("second%d@example.org", i)}
				subject := fmt.Sprintf("go-smtp %s message %d of 3", transport.name, i)
				id := queuedID(t, goSMTPSend(t, c, "app@example.com", to, clientMessage(subject, fmt.Sprintf("tag-%d", i), to)))
				if ids[id] {
					t.Fatalf("message %d got the ID %s again", i, id)
				}
				ids[id] = true
				checkStored(t, ts, id, subject, fmt.Sprintf("tag-%d", i), to, true)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
		})
	}
}

func TestGoSMTPClientRefusals(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testOptions{live: true})
	wrong := store.NewMessageID()
	for _, cr := range []credentials{
		{"plain/unknown-token", sasl.Plain, wrong, wrong},
		{"login/unknown-token", sasl.Login, wrong, wrong},
		{"plain/account-token", sasl.Plain, "anything", ts.Inst.AccountToken},
		{"login/account-token", sasl.Login, ts.Inst.AccountToken, ts.Inst.AccountToken},
	} {
		t.Run(cr.name, func(t *testing.T) {
			c := dialGoSMTP(t, ts, true)
			wantSMTPError(t, c.Auth(goSASL(cr)), 535, gosmtp.EnhancedCode{5, 7, 8}, "Authentication credentials invalid")
			wantSMTPError(t, c.Mail("app@example.com", nil), 530, gosmtp.EnhancedCode{5, 7, 0}, "Authentication required")
		})
	}
	t.Run("no-auth", func(t *testing.T) {
		c := dialGoSMTP(t, ts, false)
		wantSMTPError(t, c.Mail("app@example.com", nil), 530, gosmtp.EnhancedCode{5, 7, 0}, "Authentication required")
	})
	t.Run("after-success", func(t *testing.T) {
		// A refusal after a good AUTH on the same connection: the next
		// transaction is refused precisely, and the session goes on.
		c := dialGoSMTP(t, ts, true)
		if err := c.Auth(goSASL(credentials{mech: sasl.Plain, username: ts.Inst.ServerToken, password: ts.Inst.ServerToken})); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("app@example.com", nil); err != nil {
			t.Fatal(err)
		}
		wantSMTPError(t, c.Rcpt("someone@bad_domain.example", nil), 501, gosmtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		rcpts := []string{"dave@example.net"}
		id := queuedID(t, goSMTPSend(t, c, "app@example.com", rcpts, clientMessage("after a refusal", "", rcpts)))
		checkStored(t, ts, id, "after a refusal", "", rcpts, true)
	})
}

// --- external programs: swaks and Python's smtplib ---

// runTool runs a program with a bounded context and returns its combined
// output and exit code (-1 if it did not exit normally).
func runTool(t *testing.T, timeout time.Duration, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %s:\n%s", name, timeout, out)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("running %s: %v", name, err)
	return "", -1
}

var queuedRe = regexp.MustCompile(`250 2\.0\.0 OK: queued as ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b`)

func TestSwaks(t *testing.T) {
	t.Parallel()
	swaks := testutil.NeedTool(t, "swaks")
	ts := newTestServer(t, testOptions{live: true})
	token := ts.Inst.ServerToken
	host, port, err := net.SplitHostPort(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	tlsHost, tlsPort, err := net.SplitHostPort(ts.TLSAddr)
	if err != nil {
		t.Fatal(err)
	}
	base := func(subject string, extra ...string) []string {
		return append([]string{
			"--timeout", "20",
			"--ehlo", "swaks.test",
			"--from", "app@example.com",
			"--to", "alice@example.net,bob@example.org",
			"--header", "Subject: " + subject,
			"--header", "X-PM-Tag: swaks",
		}, extra...)
	}
	rcpts := []string{"alice@example.net", "bob@example.org"}

	for _, tc := range []struct {
		name    string
		useTLS  string // the swaks option that sets up TLS
		mech    string
		connect []string
	}{
		{"starttls/PLAIN", "--tls", "PLAIN", []string{"--server", host, "--port", port}},
		{"starttls/LOGIN", "--tls", "LOGIN", []string{"--server", host, "--port", port}},
		{"implicit-tls/PLAIN", "--tls-on-connect", "PLAIN", []string{"--server", tlsHost, "--port", tlsPort}},
		{"implicit-tls/LOGIN", "--tls-on-connect", "LOGIN", []string{"--server", tlsHost, "--port", tlsPort}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject := "swaks " + tc.name
			args := append(base(subject, tc.connect...), tc.useTLS,
				"--auth", tc.mech, "--auth-user", token, "--auth-password", token)
			out, code := runTool(t, time.Minute, swaks, args...)
			if code != 0 {
				t.Fatalf("swaks exited with %d:\n%s", code, out)
			}
			if !strings.Contains(out, "235 2.7.0 Authentication successful") {
				t.Errorf("no 235 2.7.0 reply in swaks's output:\n%s", out)
			}
			m := queuedRe.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no \"250 2.0.0 OK: queued as <id>\" in swaks's output:\n%s", out)
			}
			checkStored(t, ts, m[1], subject, "swaks", rcpts, true)
		})
	}

	t.Run("wrong-token", func(t *testing.T) {
		for _, mech := range []string{"PLAIN", "LOGIN"} {
			wrong := store.NewMessageID()
			args := append(base("swaks wrong token", "--server", host, "--port", port), "--tls",
				"--auth", mech, "--auth-user", wrong, "--auth-password", wrong)
			out, code := runTool(t, time.Minute, swaks, args...)
			if code == 0 {
				t.Errorf("%s: swaks exited 0 with a wrong token:\n%s", mech, out)
			}
			if !strings.Contains(out, "535 5.7.8 Authentication credentials invalid") {
				t.Errorf("%s: no 535 5.7.8 reply in swaks's output:\n%s", mech, out)
			}
			if strings.Contains(out, "queued as") {
				t.Errorf("%s: a message was accepted with a wrong token:\n%s", mech, out)
			}
		}
	})

	t.Run("no-auth", func(t *testing.T) {
		args := append(base("swaks without AUTH", "--server", host, "--port", port), "--tls")
		out, code := runTool(t, time.Minute, swaks, args...)
		if code == 0 {
			t.Errorf("swaks exited 0 without AUTH:\n%s", out)
		}
		if !strings.Contains(out, "530 5.7.0 Authentication required") {
			t.Errorf("no 530 5.7.0 reply in swaks's output:\n%s", out)
		}
	})
}

// smtplibScript sends with Python's smtplib over STARTTLS, verifying the
// server's certificate, and prints what it saw as one JSON object.
const smtplibScript = `
import json, smtplib, ssl, sys
from email.message import EmailMessage

host, port, token, cafile, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
out = {}
ctx = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP(host, port, local_hostname="python.test", timeout=20) as s:
    code, msg = s.ehlo()
    out["ehlo"] = code
    code, msg = s.starttls(context=ctx)
    out["starttls"] = [code, msg.decode()]
    out["tls_version"] = s.sock.version()
    s.ehlo()
    if mode == "wrong-token":
        try:
            s.login(token, token)
            out["login"] = "accepted"
        except smtplib.SMTPAuthenticationError as e:
            out["login_error"] = [e.smtp_code, e.smtp_error.decode()]
        code, msg = s.mail("python@example.com")
        out["mail_reply"] = [code, msg.decode()]
    else:
        code, msg = s.login(token, token)
        out["login"] = [code, msg.decode()]

        m = EmailMessage()
        m["From"] = "Python App <python@example.com>"
        m["To"] = "Dora <dora@example.net>, erin@example.org"
        m["Subject"] = "From smtplib send_message"
        m["X-PM-Tag"] = "python-tag"
        m.set_content("Sent by Python's smtplib.\n")

        # send_message hides DATA's reply: catch it on its way out.
        replies = []
        data = s.data
        def catching_data(msg):
            r = data(msg)
            replies.append(r)
            return r
        s.data = catching_data
        out["refused"] = s.send_message(m)
        s.data = data
        out["send_message"] = [replies[0][0], replies[0][1].decode()]

        # The same by hand: MAIL, RCPT, DATA.
        m.replace_header("Subject", "From smtplib by hand")
        out["mail"] = list(s.mail("python@example.com"))[0]
        out["rcpt"] = list(s.rcpt("dora@example.net"))[0]
        code, msg = s.data(m.as_bytes())
        out["data"] = [code, msg.decode()]
    code, msg = s.quit()
    out["quit"] = code
print(json.dumps(out))
`

func TestPythonSMTPLib(t *testing.T) {
	t.Parallel()
	python := testutil.NeedTool(t, "python3")
	ts := newTestServer(t, testOptions{live: true})
	host, port, err := net.SplitHostPort(ts.Addr)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "send.py")
	if err := os.WriteFile(script, []byte(smtplibScript), 0o600); err != nil {
		t.Fatal(err)
	}
	// The test server's self-signed certificate, which Python verifies
	// (its SANs include 127.0.0.1).
	cafile := filepath.Join(ts.dir, config.SelfSignedCert)
	if _, err := os.Stat(cafile); err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, token, mode string) map[string]any {
		t.Helper()
		out, code := runTool(t, time.Minute, python, script, host, port, token, cafile, mode)
		if code != 0 {
			t.Fatalf("python exited with %d:\n%s", code, out)
		}
		var res map[string]any
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("python's output is not JSON: %v\n%s", err, out)
		}
		t.Logf("smtplib: %s", out)
		return res
	}
	reply := func(t *testing.T, res map[string]any, key string) (float64, string) {
		t.Helper()
		v, ok := res[key].([]any)
		if !ok || len(v) != 2 {
			t.Fatalf("%s: %v", key, res[key])
		}
		code, _ := v[0].(float64)
		msg, _ := v[1].(string)
		return code, msg
	}

	t.Run("send", func(t *testing.T) {
		res := run(t, ts.Inst.ServerToken, "send")
		if code, msg := reply(t, res, "starttls"); code != 220 {
			t.Errorf("STARTTLS: %v %q", code, msg)
		}
		if v, _ := res["tls_version"].(string); !strings.HasPrefix(v, "TLSv1.") {
			t.Errorf("TLS version %q", v)
		}
		if code, msg := reply(t, res, "login"); code != 235 || msg != "2.7.0 Authentication successful" {
			t.Errorf("login: %v %q, want 235 \"2.7.0 Authentication successful\"", code, msg)
		}
		if refused, _ := res["refused"].(map[string]any); len(refused) != 0 {
			t.Errorf("send_message refused %v", refused)
		}
		for _, k := range []struct{ key, subject string }{
			{"send_message", "From smtplib send_message"},
			{"data", "From smtplib by hand"},
		} {
			code, msg := reply(t, res, k.key)
			if code != 250 {
				t.Fatalf("%s: %v %q, want 250", k.key, code, msg)
			}
			id := queuedID(t, "250 "+msg)
			rcpts := []string{"dora@example.net"}
			if k.key == "send_message" {
				// send_message takes the recipients from To.
				rcpts = []string{"dora@example.net", "erin@example.org"}
			}
			m := checkStored(t, ts, id, k.subject, "python-tag", rcpts, true)
			if m.EnvelopeFrom != "python@example.com" {
				t.Errorf("%s: EnvelopeFrom %q", k.key, m.EnvelopeFrom)
			}
			raw, err := ts.Store.RawMessage(ts.Inst.ServerID, id)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.ToLower(string(raw)), "x-pm-tag") {
				t.Errorf("%s: X-PM-Tag stored in the raw MIME:\n%s", k.key, raw)
			}
			if !strings.Contains(string(raw), "Received: from python.test ([127.0.0.1])") {
				t.Errorf("%s: Received field does not name the client:\n%s", k.key, raw)
			}
		}
		if q, _ := res["quit"].(float64); q != 221 {
			t.Errorf("QUIT: %v", res["quit"])
		}
	})

	t.Run("wrong-token", func(t *testing.T) {
		res := run(t, store.NewMessageID(), "wrong-token")
		if code, msg := reply(t, res, "login_error"); code != 535 || msg != "5.7.8 Authentication credentials invalid" {
			t.Errorf("login: %v %q, want 535 \"5.7.8 Authentication credentials invalid\"", code, msg)
		}
		if code, msg := reply(t, res, "mail_reply"); code != 530 || msg != "5.7.0 Authentication required" {
			t.Errorf("MAIL: %v %q, want 530 \"5.7.0 Authentication required\"", code, msg)
		}
	})
}
