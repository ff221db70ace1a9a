package smtptest_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/internal/testutil/smtptest"
)

const msg = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"

func TestRecordsWhatItAccepts(t *testing.T) {
	peer := smtptest.New(t, smtptest.Options{
		Rcpt: func(to string) error {
			if strings.HasPrefix(to, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		},
	})
	c, err := smtp.Dial(peer.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.net", nil); err != nil {
		t.Fatal(err)
	}
	var smtpErr *smtp.SMTPError
	if err := c.Rcpt("nobody@example.net", nil); !errors.As(err, &smtpErr) || smtpErr.Code != 550 {
		t.Fatalf("RCPT nobody: %v, want 550", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	got := peer.Messages()
	if len(got) != 1 {
		t.Fatalf("%d messages recorded, want 1", len(got))
	}
	m := got[0]
	if m.Helo != "client.test" || m.From != "a@example.com" || len(m.To) != 1 || m.To[0] != "b@example.net" || m.TLSVersion != 0 {
		t.Errorf("envelope %+v", m)
	}
	if string(m.Data) != msg {
		t.Errorf("data %q, want %q", m.Data, msg)
	}
	if peer.Connections() != 1 {
		t.Errorf("%d connections, want 1", peer.Connections())
	}
}

func TestGreetingRefusal(t *testing.T) {
	peer := smtptest.New(t, smtptest.Options{
		Greeting: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"},
	})
	c, err := net.Dial("tcp", peer.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	n, _ := c.Read(buf)
	if got := string(buf[:n]); got != "421 4.3.2 busy\r\n" {
		t.Errorf("greeting %q", got)
	}
}

func TestAuthOverImplicitTLS(t *testing.T) {
	cfg, roots := smtptest.Certificate(t, "127.0.0.1")
	peer := smtptest.New(t, smtptest.Options{TLS: cfg, ImplicitTLS: true, Auth: &smtptest.Credentials{Username: "u", Password: "p"}})

	c, err := smtp.DialTLS(peer.Addr(), &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var smtpErr *smtp.SMTPError
	if err := c.Mail("a@example.com", nil); !errors.As(err, &smtpErr) || smtpErr.Code != 530 {
		t.Fatalf("MAIL before AUTH: %v, want 530", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "wrong")); !errors.As(err, &smtpErr) || smtpErr.Code != 535 {
		t.Fatalf("AUTH with a wrong password: %v, want 535", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "u", "p")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("a@example.com", []string{"b@example.net"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	m := peer.Messages()
	if len(m) != 1 || m[0].AuthUser != "u" || m[0].TLSVersion < tls.VersionTLS12 {
		t.Errorf("messages %+v", m)
	}
}
