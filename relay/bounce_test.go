package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestClassifyReply(t *testing.T) {
	tests := []struct {
		name  string
		reply Reply
		want  Classification
	}{
		{"accepted", Reply{250, EnhancedCode{2, 0, 0}, "OK: queued as 123"}, Classification{Outcome: Delivered}},
		{"accepted without enhanced code", Reply{250, EnhancedCode{}, "ok"}, Classification{Outcome: Delivered}},
		{"greylisted", Reply{450, EnhancedCode{4, 2, 0}, "Greylisted, try again later"}, Classification{Outcome: Transient}},
		{"mailbox busy", Reply{451, EnhancedCode{4, 3, 0}, "temporary failure"}, Classification{Outcome: Transient}},
		{"temporary with 5.x.x enhanced code", Reply{421, EnhancedCode{5, 1, 1}, "confused server"}, Classification{Outcome: Transient}},
		{"unexpected 3xx", Reply{354, EnhancedCode{}, "go ahead"}, Classification{Outcome: Transient}},
		{"no code", Reply{0, EnhancedCode{}, "connection reset"}, Classification{Outcome: Transient}},

		{"unknown mailbox", Reply{550, EnhancedCode{5, 1, 1}, "The email account that you tried to reach does not exist."}, bounced(BounceHard)},
		{"bad destination system", Reply{550, EnhancedCode{5, 1, 2}, "bad destination system"}, bounced(BounceHard)},
		{"recipient has null MX", Reply{556, EnhancedCode{5, 1, 10}, "Recipient address has null MX"}, bounced(BounceHard)},
		{"other addressing", Reply{550, EnhancedCode{5, 1, 0}, "Address rejected"}, bounced(BounceHard)},
		{"bad address syntax", Reply{501, EnhancedCode{5, 1, 3}, "Bad recipient address syntax"}, bounced(BounceBadEmailAddress)},
		{"bad sender address is not the recipient's fault", Reply{553, EnhancedCode{5, 1, 7}, "Bad sender's mailbox address syntax"}, bounced(BounceSoft)},
		{"sender domain unresolvable", Reply{550, EnhancedCode{5, 1, 8}, "Sender address rejected: Domain not found"}, bounced(BounceSoft)},
		{"mailbox full", Reply{552, EnhancedCode{5, 2, 2}, "The email account that you tried to reach is over quota."}, bounced(BounceSoft)},
		{"mailbox disabled", Reply{550, EnhancedCode{5, 2, 1}, "The email account that you tried to reach is disabled."}, bounced(BounceSoft)},
		{"message too big", Reply{552, EnhancedCode{5, 3, 4}, "Message size exceeds fixed limit"}, bounced(BounceSoft)},
		{"unable to route", Reply{550, EnhancedCode{5, 4, 4}, "Unrouteable address"}, bounced(BounceDNSError)},
		{"routing loop", Reply{554, EnhancedCode{5, 4, 6}, "Routing loop detected"}, bounced(BounceSoft)},
		{"spam", Reply{550, EnhancedCode{5, 7, 1}, "Message rejected as spam"}, bounced(BounceBlocked)},
		{"block list", Reply{554, EnhancedCode{5, 7, 1}, "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"}, bounced(BounceBlocked)},
		{"DMARC", Reply{550, EnhancedCode{5, 7, 26}, "Unauthenticated email from example.com is not accepted due to domain's DMARC policy."}, bounced(BounceDMARCPolicy)},
		{"DMARC in capitals", Reply{550, EnhancedCode{5, 7, 1}, "Rejected by DMARC Policy"}, bounced(BounceDMARCPolicy)},
		{"generic with telling text", Reply{550, EnhancedCode{5, 0, 0}, "<x@example.com>: User unknown"}, bounced(BounceHard)},
		{"protocol error", Reply{554, EnhancedCode{5, 5, 0}, "Transaction failed"}, bounced(BounceSoft)},
		{"content refused", Reply{554, EnhancedCode{5, 6, 0}, "Message content rejected, spam detected"}, bounced(BounceBlocked)},

		{"no enhanced code, user unknown", Reply{550, EnhancedCode{}, "No such user here"}, bounced(BounceHard)},
		{"no enhanced code, quota", Reply{550, EnhancedCode{}, "Mailbox is full"}, bounced(BounceSoft)},
		{"no enhanced code, policy", Reply{554, EnhancedCode{}, "Rejected by policy"}, bounced(BounceBlocked)},
		{"no enhanced code, 551", Reply{551, EnhancedCode{}, "User not local; please try <forward@example.com>"}, bounced(BounceHard)},
		{"no enhanced code, 552", Reply{552, EnhancedCode{}, "Requested mail action aborted"}, bounced(BounceSoft)},
		{"no enhanced code, 553", Reply{553, EnhancedCode{}, "Requested action not taken: mailbox name not allowed"}, bounced(BounceBadEmailAddress)},
		{"no enhanced code, bare 550", Reply{550, EnhancedCode{}, "Requested action not taken: mailbox unavailable"}, bounced(BounceUnknown)},
		{"permanent with 4.x.x enhanced code", Reply{550, EnhancedCode{4, 1, 1}, "confused"}, bounced(BounceUnknown)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyReply(tt.reply); got != tt.want {
				t.Errorf("ClassifyReply(%v) = %+v, want %+v", tt.reply, got, tt.want)
			}
		})
	}
}

func bounced(b BounceType) Classification { return Classification{Outcome: Bounced, Bounce: b} }

func TestBounceTypeNamesAndInactivation(t *testing.T) {
	tests := []struct {
		bounce      BounceType
		code        int
		name        string
		inactivates bool
	}{
		{BounceHard, 1, "HardBounce", true},
		{BounceTransient, 2, "Transient", false},
		{BounceDNSError, 256, "DnsError", false},
		{BounceUnknown, 2048, "Unknown", false},
		{BounceSoft, 4096, "SoftBounce", false},
		{BounceBadEmailAddress, 100000, "BadEmailAddress", true},
		{BounceSpamComplaint, 100001, "SpamComplaint", true},
		{BounceManuallyDeactivated, 100002, "ManuallyDeactivated", true},
		{BounceBlocked, 100006, "Blocked", false},
		{BounceSMTPAPIError, 100007, "SMTPApiError", false},
		{BounceDMARCPolicy, 100009, "DMARCPolicy", false},
	}
	for _, tt := range tests {
		if int(tt.bounce) != tt.code || tt.bounce.String() != tt.name || tt.bounce.Inactivates() != tt.inactivates {
			t.Errorf("%d: code %d, name %q, inactivates %v; want %d, %q, %v",
				tt.code, int(tt.bounce), tt.bounce, tt.bounce.Inactivates(), tt.code, tt.name, tt.inactivates)
		}
	}
}

func TestReplyString(t *testing.T) {
	tests := []struct {
		reply Reply
		want  string
	}{
		{Reply{550, EnhancedCode{5, 1, 1}, "no such user"}, "550 5.1.1 no such user"},
		{Reply{550, EnhancedCode{}, "no such user"}, "550 no such user"},
		{Reply{0, EnhancedCode{}, "dial tcp: connection refused"}, "dial tcp: connection refused"},
	}
	for _, tt := range tests {
		if got := tt.reply.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

// The errors come from real failures where they can be made on loopback.
func TestClassifyError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Classification
	}{
		{"connection refused", connectionRefused(t), Classification{Outcome: Transient}},
		{"read timeout", readTimeout(t), Classification{Outcome: Transient}},
		{"TLS handshake with a plain server", tlsWithPlainServer(t), Classification{Outcome: Transient}},
		{"context deadline", context.DeadlineExceeded, Classification{Outcome: Transient}},
		{"connection closed", io.ErrUnexpectedEOF, Classification{Outcome: Transient}},
		{"anything else", errors.New("something unforeseen"), Classification{Outcome: Transient}},
		{"no such domain", &net.DNSError{Err: "no such host", Name: "nowhere.test", IsNotFound: true}, bounced(BounceDNSError)},
		{"DNS server failure", &net.DNSError{Err: "server misbehaving", Name: "example.test", IsTemporary: true}, Classification{Outcome: Transient}},
		{"DNS timeout", &net.DNSError{Err: "i/o timeout", Name: "example.test", IsTimeout: true}, Classification{Outcome: Transient}},
		{"null MX", fmt.Errorf("nomail.test: %w", ErrNullMX), bounced(BounceDNSError)},
		{"SMTP reply", fmt.Errorf("RCPT: %w", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"}), bounced(BounceHard)},
		{"SMTP reply without enhanced code", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.NoEnhancedCode, Message: "No such user"}, bounced(BounceHard)},
		{"5xx greeting of a host", &HostError{Host: "mx.test", Addr: "192.0.2.1:25", Err: &smtp.SMTPError{Code: 554, Message: "no service"}}, Classification{Outcome: Transient}},
		{"host address not found", &HostError{Host: "mx.test", Err: &net.DNSError{IsNotFound: true}}, Classification{Outcome: Transient}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClassifyError(tt.err); got != tt.want {
				t.Errorf("ClassifyError(%v) = %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}

func connectionRefused(t *testing.T) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded after its listener closed", addr)
	}
	return err
}

// loopbackPair returns both ends of a TCP connection on loopback.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func readTimeout(t *testing.T) error {
	client, _ := loopbackPair(t)
	client.SetReadDeadline(time.Now()) // already passed: no waiting
	_, err := client.Read(make([]byte, 1))
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("read past deadline: %v, want a timeout", err)
	}
	return err
}

func tlsWithPlainServer(t *testing.T) error {
	client, server := loopbackPair(t)
	go func() {
		io.WriteString(server, "220 mx.test ESMTP plain only\r\n")
		io.Copy(io.Discard, server)
	}()
	err := tls.Client(client, &tls.Config{InsecureSkipVerify: true}).Handshake()
	if err == nil {
		t.Fatal("TLS handshake with a plain server succeeded")
	}
	return err
}

// FuzzClassifyReply checks that any reply gets a classification that is
// consistent with its basic code. The seed corpus is in
// testdata/fuzz/FuzzClassifyReply.
func FuzzClassifyReply(f *testing.F) {
	possible := map[BounceType]bool{
		BounceHard: true, BounceDNSError: true, BounceUnknown: true, BounceSoft: true,
		BounceBadEmailAddress: true, BounceBlocked: true, BounceDMARCPolicy: true,
	}
	f.Fuzz(func(t *testing.T, code, class, subject, detail int, text string) {
		r := Reply{Code: code, Enhanced: EnhancedCode{class, subject, detail}, Text: text}
		c := ClassifyReply(r)
		if again := ClassifyReply(r); again != c {
			t.Fatalf("ClassifyReply(%v) gave %+v, then %+v", r, c, again)
		}
		switch {
		case code >= 200 && code <= 299:
			if c != (Classification{Outcome: Delivered}) {
				t.Errorf("2xx %v classified as %+v", r, c)
			}
		case code >= 500 && code <= 599:
			if c.Outcome != Bounced || !possible[c.Bounce] {
				t.Errorf("5xx %v classified as %+v", r, c)
			}
		default:
			if c != (Classification{Outcome: Transient}) {
				t.Errorf("%v classified as %+v, want Transient", r, c)
			}
		}
		if s := r.String(); !strings.Contains(s, text) {
			t.Errorf("String() = %q lost the text %q", s, text)
		}
	})
}
