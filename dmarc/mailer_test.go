package dmarc_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// TestDigestAndAlertMailed: the Owners of an account get last week's
// digest of its domain once, and an alert about a new unknown source
// sending over 100 messages a day, once; Members get neither.
func TestDigestAndAlertMailed(t *testing.T) {
	st, acct, d := domainStore(t)
	for email, role := range map[string]string{"owner@client.example": store.UserOwner, "member@client.example": store.UserMember} {
		u, err := st.CreateUser(store.User{Email: email})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetMembership(store.Membership{UserID: u.ID, AccountID: acct.ID, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC) // a Wednesday
	lastWeek := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	for i, r := range []store.DMARCReport{
		{OrgName: "google.com", ExternalID: "1", Begin: lastWeek, End: lastWeek.Add(24 * time.Hour), Rows: []store.DMARCRow{{SourceIP: "192.0.2.10", Count: 40, DKIM: "pass", SPF: "pass", Disposition: "none"}}},
		{OrgName: "google.com", ExternalID: "2", Begin: now.Add(-20 * time.Hour), End: now.Add(-time.Hour), Rows: []store.DMARCRow{{SourceIP: "198.51.100.66", Count: 150, DKIM: "fail", SPF: "fail", Disposition: "none"}}},
	} {
		r.DomainID, r.Status, r.Via, r.ReceivedAt = d.ID, store.DMARCParsed, "mail", now
		if _, err := st.AddDMARCReport(r, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	dns := dnstest.New(t)
	dns.SetMX("client.example", []dnstest.MX{{Host: "mx.client.example", Pref: 10}})
	dns.SetA("mx.client.example", netip.MustParseAddr("127.0.0.1"))
	sink := smtptest.New(t, smtptest.Options{})
	resolver := relay.NewResolver(dns.Addr())
	mx, err := relay.NewMXDeliverer(relay.MXConfig{ClientConfig: relay.ClientConfig{Hostname: "postern.test"}, Resolver: resolver, Port: sink.Port(), AllowPrivate: true})
	if err != nil {
		t.Fatal(err)
	}
	m := &dmarc.Mailer{Store: st, Mail: mx, TXT: resolver, Hostname: "postern.test", Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler)}
	m.Run(context.Background())
	m.Run(context.Background()) // nothing twice

	got := sink.Messages()
	if len(got) != 2 {
		t.Fatalf("%d messages, want the digest and the alert", len(got))
	}
	subjects := map[string]string{}
	for _, msg := range got {
		if len(msg.To) != 1 || msg.To[0] != "owner@client.example" {
			t.Errorf("sent to %v, want the Owner only", msg.To)
		}
		data := string(msg.Data)
		subject := data[strings.Index(data, "Subject: ")+9:]
		subjects[subject[:strings.Index(subject, "\r\n")]] = data
	}
	digest := subjects["DMARC digest for example.com, week of 2026-11-23"]
	if !strings.Contains(digest, "40 messages claimed to be from example.com") || !strings.Contains(digest, "192.0.2.10") {
		t.Errorf("the digest:\n%s", digest)
	}
	alert := subjects["New sender as example.com: 198.51.100.66"]
	if !strings.Contains(alert, "sent 150 messages as example.com in a day") {
		t.Errorf("the alert:\n%s", alert)
	}
}
