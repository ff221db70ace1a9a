package smtpd

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// The domains of the policy tests: the test account has good.example
// (registered, not verified) and verified.example (verified); another
// account has other.example; nobody has evil.example.
const (
	domainGood     = "good.example"
	domainVerified = "verified.example"
	domainOther    = "other.example"
	domainEvil     = "evil.example"
)

// policyServer is a test listener with the domains above and a Live
// server, whose token is liveToken, beside the default Sandbox one.
type policyServer struct {
	*testServer
	liveID    int64
	liveToken string
}

func newPolicyServer(t *testing.T, policy store.SenderPolicy, mutate func(*Config)) *policyServer {
	t.Helper()
	ts := newTestServer(t, testOptions{mutate: func(c *Config) {
		c.SenderPolicy = policy
		if mutate != nil {
			mutate(c)
		}
	}})
	ps := &policyServer{testServer: ts}
	ps.liveID, ps.liveToken = ts.addServer(t, "Live", store.DeliveryLive)
	ts.addDomain(t, ts.Inst.AccountID, domainGood, false)
	ts.addDomain(t, ts.Inst.AccountID, domainVerified, true)
	other, err := ts.Store.CreateAccount("Other", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ts.addDomain(t, other.ID, domainOther, true)
	return ps
}

// addServer creates a server with SMTP turned on in the test account and
// returns its ID and token.
func (ts *testServer) addServer(t *testing.T, name, deliveryType string) (int64, string) {
	t.Helper()
	token := auth.NewToken()
	srv, err := ts.Store.CreateServer(store.Server{
		AccountID: ts.Inst.AccountID, Name: name, DeliveryType: deliveryType, SmtpApiActivated: true,
	}, auth.StoreToken(token), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return srv.ID, token
}

func (ts *testServer) addDomain(t *testing.T, accountID int64, name string, verified bool) store.Domain {
	t.Helper()
	d, err := ts.Store.CreateDomain(store.Domain{AccountID: accountID, Name: name}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if verified {
		d.DKIMVerified, d.VerifiedAt = true, time.Now()
		if err := ts.Store.UpdateDomain(d); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// sendHeader sends one message whose header section starts with header
// (From fields, or none) and returns the reply to the final dot.
func sendHeader(t *testing.T, c *rawClient, header string) string {
	t.Helper()
	return sendHeaderAs(c, "bounces@verified.example", header)
}

// sendHeaderAs is sendHeader with the envelope sender given.
func sendHeaderAs(c *rawClient, envelope, header string) string {
	c.expect("250", "MAIL FROM:<%s>", envelope)
	c.expect("250", "RCPT TO:<alice@example.net>")
	return c.sendData(header + "To: alice@example.net\r\nSubject: policy\r\n\r\nHello.\r\n")
}

func notRegistered(domain string) string {
	return fmt.Sprintf(`550 5.7.1 Sender domain %q is not registered for this account; add it with "postern domain add %s"`, domain, domain)
}

func notVerified(domain string) string {
	return fmt.Sprintf(`550 5.7.1 Sender domain %q is not verified: its DKIM records were not found in DNS; publish them, then run "postern domain verify %s"`, domain, domain)
}

// countMessages returns how many messages a server has stored.
func countMessages(t *testing.T, st *bolt.Store, serverID int64) int {
	t.Helper()
	msgs, err := st.Messages(serverID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(msgs)
}

// TestSenderPolicy sends from each kind of domain under each policy, from
// a Live server and from a Sandbox one. A refusal stores nothing and
// leaves the session usable.
func TestSenderPolicy(t *testing.T) {
	const accepted = "250 2.0.0 OK: queued as "
	type sendCase struct {
		from string // the From field's value; "" sends no From field
		want string // exact reply, or accepted (a prefix)
	}
	live := map[store.SenderPolicy][]sendCase{
		store.PolicyRegistered: {
			{"App <app@good.example>", accepted},
			{"app@verified.example", accepted},
			{"App <APP@Good.Example>", accepted},
			{"App <app@evil.example>", notRegistered(domainEvil)},
			// Another account's domain gets the very reply an unknown
			// one does: nothing tells that the domain exists.
			{"App <app@other.example>", notRegistered(domainOther)},
			// Registered names match exactly, not by parent domain.
			{"app@mail.good.example", notRegistered("mail.good.example")},
			{"", "554 5.6.0 The message has no From header field; add one with the sender's address"},
		},
		store.PolicyVerified: {
			{"App <app@verified.example>", accepted},
			{"App <app@good.example>", notVerified(domainGood)},
			{"App <app@evil.example>", notRegistered(domainEvil)},
			{"App <app@other.example>", notRegistered(domainOther)},
		},
		store.PolicyAny: {
			{"App <app@evil.example>", accepted},
			{"App <app@other.example>", accepted},
			{"App <app@good.example>", accepted},
			{"", accepted},
			{"a@evil.example, b@evil.example", accepted},
		},
	}
	for _, policy := range []store.SenderPolicy{store.PolicyRegistered, store.PolicyVerified, store.PolicyAny} {
		t.Run(policy.String(), func(t *testing.T) {
			ps := newPolicyServer(t, policy, nil)
			c := authenticated(t, ps.Addr, ps.liveToken)
			stored := 0
			for _, tc := range live[policy] {
				header := ""
				if tc.from != "" {
					header = "From: " + tc.from + "\r\n"
				}
				got := sendHeader(t, c, header)
				if tc.want == accepted {
					if !strings.HasPrefix(got, accepted) {
						t.Errorf("From %q: got %q, want acceptance", tc.from, got)
					}
					stored++
				} else if got != tc.want {
					t.Errorf("From %q:\n got %q\nwant %q", tc.from, got, tc.want)
				}
			}
			if n := countMessages(t, ps.Store, ps.liveID); n != stored {
				t.Errorf("the Live server stored %d messages, want %d", n, stored)
			}

			// A Sandbox server sends nothing: any From will do, or none.
			sc := authenticated(t, ps.Addr, ps.Inst.ServerToken)
			for _, header := range []string{"From: App <app@evil.example>\r\n", "From: app@other.example\r\n", "", "From: a@evil.example\r\nFrom: b@evil.example\r\n"} {
				if got := sendHeader(t, sc, header); !strings.HasPrefix(got, accepted) {
					t.Errorf("Sandbox server, header %q: got %q, want acceptance", header, got)
				}
			}
		})
	}
}

// TestSenderPolicyBypass tries to pass a message from evil.example (or an
// ambiguous one) for one from good.example, the account's domain. The
// domain checked is the From address's, as written: never a display name,
// a comment or an encoded word, and the message must have exactly one
// From field with exactly one address.
func TestSenderPolicyBypass(t *testing.T) {
	ps := newPolicyServer(t, store.PolicyRegistered, nil)
	c := authenticated(t, ps.Addr, ps.liveToken)
	evil := notRegistered(domainEvil)
	for _, tc := range []struct {
		name, header, want string
	}{
		{"display name holding an address",
			"From: \"app@good.example\" <x@evil.example>\r\n", evil},
		{"unquoted display name with an address",
			"From: app@good.example <x@evil.example>\r\n", "554 5.6.0 The From header field is not a valid address (expected comma)"},
		{"encoded-word display name holding an address",
			"From: =?utf-8?q?app=40good.example?= <x@evil.example>\r\n", evil},
		{"base64 encoded-word display name",
			"From: =?UTF-8?B?YXBwQGdvb2QuZXhhbXBsZQ==?= <x@evil.example>\r\n", evil},
		{"encoded word as the whole address",
			"From: =?utf-8?q?app=40good.example?=\r\n", "554 5.6.0 The From header field is not a valid address"},
		{"encoded word inside the angle brackets",
			"From: <=?utf-8?q?app=40good.example?=>\r\n", "554 5.6.0 The From header field is not a valid address"},
		{"comment holding an address",
			"From: x@evil.example (app@good.example)\r\n", evil},
		// Unquoted, the local part holds a second "@": refused as an
		// invalid address since validAddress refuses an unquoted "@"
		// (TestFuzzValidAddressUnquotedAt).
		{"quoted local part holding an address",
			"From: \"app@good.example\"@evil.example\r\n", "554 5.6.0 The From header field is not a valid address"},
		{"folded field",
			"From: \"App\r\n at good.example\"\r\n <x@evil.example>\r\n", evil},
		{"folded field with tabs",
			"From:\r\n\t\"app@good.example\"\r\n\t<x@evil.example>\r\n", evil},
		{"group holding the address",
			"From: \"app@good.example\": x@evil.example;\r\n", evil},
		{"two From fields, good first",
			"From: app@good.example\r\nFrom: x@evil.example\r\n", "554 5.6.0 The message has 2 From header fields; it must have exactly one"},
		{"two From fields, evil first",
			"From: x@evil.example\r\nfrom: app@good.example\r\n", "554 5.6.0 The message has 2 From header fields; it must have exactly one"},
		{"two addresses in one field",
			"From: app@good.example, x@evil.example\r\n", "550 5.7.1 The From header field has 2 addresses; it must have exactly one, at a domain of this account"},
		{"empty group",
			"From: undisclosed:;\r\n", "550 5.7.1 The From header field has 0 addresses; it must have exactly one, at a domain of this account"},
		{"source route",
			"From: <@good.example:x@evil.example>\r\n", "554 5.6.0 The From header field is not a valid address"},
		{"address literal",
			"From: x@[192.0.2.1]\r\n", "550 5.7.1 The From address must be at a domain name of this account, not an address literal"},
		{"empty From",
			"From: \r\n", "554 5.6.0 The From header field is not a valid address"},
		// The control cases: the account's domain gets through however
		// the field is written.
		{"folded good From", "From: \"App\"\r\n\t<app@good.example>\r\n", "250 2.0.0 OK: queued as "},
		{"encoded display name, good address", "From: =?utf-8?q?x=40evil.example?= <app@good.example>\r\n", "250 2.0.0 OK: queued as "},
		{"lower-case field name", "from: app@good.example\r\n", "250 2.0.0 OK: queued as "},
		{"trailing comma", "From: <app@good.example>,\r\n", "250 2.0.0 OK: queued as "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := countMessages(t, ps.Store, ps.liveID)
			got := sendHeader(t, c, tc.header)
			if !strings.HasPrefix(got, tc.want) {
				t.Fatalf("got %q\nwant %q…", got, tc.want)
			}
			want := before
			if strings.HasPrefix(tc.want, "250") {
				want++
			}
			if n := countMessages(t, ps.Store, ps.liveID); n != want {
				t.Errorf("%d messages stored, want %d", n, want)
			}
		})
	}
}

// suppress makes rcpt inactive for serverID the way delivery does: a
// message to it, claimed, and an attempt whose outcome inactivates it.
func suppress(t *testing.T, ts *testServer, serverID int64, token, rcpt string, at time.Time) {
	t.Helper()
	c := authenticated(t, ts.Addr, token)
	c.expect("250", "MAIL FROM:<app@good.example>")
	c.expect("250", "RCPT TO:<%s>", rcpt)
	id := queuedID(t, c.sendData("From: app@good.example\r\nSubject: to bounce\r\n\r\nhi\r\n"))
	c.expect("221", "QUIT")
	entries, err := ts.Store.Claim(store.ClaimRequest{Now: time.Now(), Lease: time.Minute, Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.MessageID != id {
			continue
		}
		if err := ts.Store.RecordAttempt(store.Attempt{Entry: e, At: at, Outcomes: []store.Outcome{{
			Recipient:  rcpt,
			Type:       store.EventBounced,
			Details:    store.EventDetails{BounceType: "HardBounce", DeliveryMessage: "550 5.1.1 no such user"},
			Inactivate: true,
		}}}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("message %s not in the queue: %+v", id, entries)
}

// TestInactiveRecipient: a recipient that hard-bounced on one server is
// refused at RCPT on that server, naming the reason and the date, and
// accepted on another; reactivated, it is accepted again.
func TestInactiveRecipient(t *testing.T) {
	ps := newPolicyServer(t, store.PolicyRegistered, nil)
	bouncedAt := time.Date(2026, 11, 27, 23, 30, 0, 0, time.FixedZone("UTC-5", -5*3600)) // 2026-11-28 in UTC
	suppress(t, ps.testServer, ps.liveID, ps.liveToken, "gone@example.net", bouncedAt)

	c := authenticated(t, ps.Addr, ps.liveToken)
	c.expect("250", "MAIL FROM:<app@good.example>")
	want := "550 5.1.1 Recipient <Gone@Example.NET> is inactive for this server: HardBounce on 2026-11-28; reactivate it to send again"
	if got := c.cmd("RCPT TO:<Gone@Example.NET>"); got != want {
		t.Fatalf("inactive recipient:\n got %q\nwant %q", got, want)
	}
	// The message goes on to the other recipients.
	c.expect("250", "RCPT TO:<alice@example.net>")
	id := queuedID(t, c.sendData("From: app@good.example\r\nSubject: s\r\n\r\nhi\r\n"))
	m, err := ps.Store.Message(ps.liveID, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Recipients) != 1 || m.Recipients[0] != "alice@example.net" {
		t.Errorf("recipients %q, want [alice@example.net]", m.Recipients)
	}

	// Another server of the same account is unaffected, Live or Sandbox.
	_, otherToken := ps.addServer(t, "Live 2", store.DeliveryLive)
	for _, token := range []string{otherToken, ps.Inst.ServerToken} {
		o := authenticated(t, ps.Addr, token)
		o.expect("250", "MAIL FROM:<app@good.example>")
		o.expect("250", "RCPT TO:<gone@example.net>")
		queuedID(t, o.sendData("From: app@good.example\r\nSubject: s\r\n\r\nhi\r\n"))
	}

	// Reactivated, the recipient is accepted again.
	if err := ps.Store.Unsuppress(ps.liveID, "gone@example.net"); err != nil {
		t.Fatal(err)
	}
	c.expect("250", "MAIL FROM:<app@good.example>")
	c.expect("250", "RCPT TO:<gone@example.net>")
}

// TestAcceptedHook: the hook is told each stored message's server and
// MessageID, once, and nothing of a refused message.
func TestAcceptedHook(t *testing.T) {
	type call struct {
		serverID  int64
		messageID string
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	ps := newPolicyServer(t, store.PolicyRegistered, func(c *Config) {
		c.Accepted = func(serverID int64, messageID string) {
			mu.Lock()
			calls = append(calls, call{serverID, messageID})
			mu.Unlock()
		}
	})
	var want []call
	live := authenticated(t, ps.Addr, ps.liveToken)
	want = append(want, call{ps.liveID, queuedID(t, sendHeader(t, live, "From: app@good.example\r\n"))})
	if got := sendHeader(t, live, "From: x@evil.example\r\n"); !strings.HasPrefix(got, "550 5.7.1") {
		t.Fatalf("from evil.example: %q", got)
	}
	sandbox := authenticated(t, ps.Addr, ps.Inst.ServerToken)
	want = append(want, call{ps.Inst.ServerID, queuedID(t, sendHeader(t, sandbox, "From: x@evil.example\r\n"))})
	want = append(want, call{ps.liveID, queuedID(t, sendHeader(t, live, "From: app@verified.example\r\n"))})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Errorf("Accepted calls %v, want %v", calls, want)
	}
}

// failingStore fails the policy lookups, as a store with I/O errors would.
type failingStore struct {
	Store
	domains, suppressions error
}

func (f failingStore) DomainByName(name string) (store.Domain, error) {
	if f.domains != nil {
		return store.Domain{}, f.domains
	}
	return f.Store.DomainByName(name)
}

func (f failingStore) Suppressed(serverID int64, email string) (store.Suppression, bool, error) {
	if f.suppressions != nil {
		return store.Suppression{}, false, f.suppressions
	}
	return f.Store.Suppressed(serverID, email)
}

// A failure to look the sender or a recipient up is temporary: 451 4.3.0,
// and nothing is stored.
func TestPolicyLookupFailures(t *testing.T) {
	ioErr := errors.New("input/output error")
	ps := newPolicyServer(t, store.PolicyRegistered, func(c *Config) {
		c.Store = failingStore{Store: c.Store, domains: ioErr}
	})
	c := authenticated(t, ps.Addr, ps.liveToken)
	const failure = "451 4.3.0 Temporary failure checking the sender domain; the message was not accepted, try again later"
	if got := c.cmd("MAIL FROM:<bounces@good.example>"); got != failure {
		t.Errorf("envelope sender lookup failure: %q", got)
	}
	if got := sendHeaderAs(c, "", "From: app@good.example\r\n"); got != failure {
		t.Errorf("sender lookup failure: %q", got)
	}
	if n := countMessages(t, ps.Store, ps.liveID); n != 0 {
		t.Errorf("%d messages stored", n)
	}

	ps = newPolicyServer(t, store.PolicyRegistered, func(c *Config) {
		c.Store = failingStore{Store: c.Store, suppressions: ioErr}
	})
	c = authenticated(t, ps.Addr, ps.liveToken)
	c.expect("250", "MAIL FROM:<app@good.example>")
	if got := c.cmd("RCPT TO:<alice@example.net>"); got != "451 4.3.0 Temporary failure checking the recipient; try again later" {
		t.Errorf("recipient lookup failure: %q", got)
	}
}

// The envelope sender, and the Sender and Resent-From fields when
// present, are held to the sender policy as From is: a Live server's
// message names no domain outside its account (verified, under
// store.PolicyVerified), or it is refused with 550 5.7.1 naming the field. The
// null sender is allowed; a Sandbox server sends nothing and is exempt.
func TestSenderPolicyOtherSenders(t *testing.T) {
	const accepted = "250 2.0.0 OK: queued as "
	refusal := func(field, domain, state string) string {
		if state == "verified" {
			return fmt.Sprintf(`550 5.7.1 The %s domain %q is not verified: its DKIM records were not found in DNS; publish them, then run "postern domain verify %s"`, field, domain, domain)
		}
		return fmt.Sprintf(`550 5.7.1 The %s domain %q is not registered for this account; add it with "postern domain add %s"`, field, domain, domain)
	}
	ps := newPolicyServer(t, store.PolicyVerified, nil)
	c := authenticated(t, ps.Addr, ps.liveToken)
	for _, tc := range []struct{ envelope, want string }{
		{"bounces@evil.example", refusal("MAIL FROM", domainEvil, "registered")},
		{"bounces@other.example", refusal("MAIL FROM", domainOther, "registered")},
		{"bounces@good.example", refusal("MAIL FROM", domainGood, "verified")},
	} {
		if got := c.cmd("MAIL FROM:<%s>", tc.envelope); got != tc.want {
			t.Errorf("MAIL FROM:<%s>: %q, want %q", tc.envelope, got, tc.want)
		}
	}
	from := "From: app@verified.example\r\n"
	for _, tc := range []struct{ envelope, header, want string }{
		{"", from, accepted},
		{"bounces@verified.example", from + "Sender: Ops <ops@verified.example>\r\n", accepted},
		{"bounces@verified.example", from + "Sender: Ops <ops@evil.example>\r\n", refusal("Sender", domainEvil, "registered")},
		{"bounces@verified.example", from + "Resent-From: a@verified.example, b@other.example\r\n", refusal("Resent-From", domainOther, "registered")},
		{"bounces@verified.example", from + "resent-from: x@good.example\r\n", refusal("Resent-From", domainGood, "verified")},
	} {
		got := sendHeaderAs(c, tc.envelope, tc.header)
		if tc.want == accepted && !strings.HasPrefix(got, accepted) || tc.want != accepted && got != tc.want {
			t.Errorf("envelope <%s>, header %q: %q, want %q", tc.envelope, tc.header, got, tc.want)
		}
	}
	if n := countMessages(t, ps.Store, ps.liveID); n != 2 {
		t.Errorf("%d messages stored, want the 2 accepted", n)
	}
	// A Sandbox server is exempt.
	s := authenticated(t, ps.Addr, ps.Inst.ServerToken)
	if got := sendHeaderAs(s, "bounces@evil.example", "From: a@evil.example\r\nSender: b@evil.example\r\n"); !strings.HasPrefix(got, accepted) {
		t.Errorf("Sandbox server: %q", got)
	}
}
