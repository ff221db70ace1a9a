package dmarc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// MailerStore is what the digests and alerts need of the store.
type MailerStore interface {
	Store
	Accounts() ([]store.Account, error)
	Domains(accountID int64) ([]store.Domain, error)
	DomainByName(name string) (store.Domain, error)
	AccountMembers(accountID int64) ([]store.Membership, error)
	User(id int64) (store.User, error)
	Mark(key string, at time.Time) (bool, error)
}

// Deliverer sends a message to one domain's mail exchangers;
// *relay.MXDeliverer is one.
type Deliverer interface {
	DeliverDomain(ctx context.Context, domain string, env relay.Envelope, msg relay.Message) (relay.Result, error)
}

// AlertThreshold is the messages in one day from a new unknown source
// that make an alert, rather than wait for the week's digest.
const AlertThreshold = 100

// Mailer sends each account's Owners the weekly digest of each of its
// domains, and an alert when a new unknown source sends more than
// AlertThreshold messages a day. Each is sent once (store marks), by
// whichever node runs it first.
type Mailer struct {
	Store      MailerStore
	Mail       Deliverer
	TXT        TXTResolver // the domains' DMARC records, for the advice
	Hostname   string      // the sender's domain: dmarc-digest@<Hostname>
	SendingIPs []netip.Addr
	PTR        func(ip string) string
	Now        func() time.Time
	Log        *slog.Logger
}

// weekOf is the Monday 00:00 UTC starting the week of t.
func weekOf(t time.Time) time.Time {
	day := t.UTC().Truncate(24 * time.Hour)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

// Run sends what is due now: last week's digests, and today's alerts.
func (m *Mailer) Run(ctx context.Context) {
	accounts, err := m.Store.Accounts()
	if err != nil {
		m.Log.Error("dmarc: cannot list the accounts", "err", err)
		return
	}
	now := m.Now()
	for _, acct := range accounts {
		owners := m.owners(acct.ID)
		if len(owners) == 0 {
			continue
		}
		domains, err := m.Store.Domains(acct.ID)
		if err != nil {
			m.Log.Error("dmarc: cannot list an account's domains", "account", acct.ID, "err", err)
			continue
		}
		for _, d := range domains {
			if ctx.Err() != nil {
				return
			}
			m.digest(ctx, d, owners, now)
			m.alerts(ctx, d, owners, now)
		}
	}
}

// owners are the addresses of an account's Owners.
func (m *Mailer) owners(accountID int64) []string {
	members, err := m.Store.AccountMembers(accountID)
	if err != nil {
		m.Log.Error("dmarc: cannot list an account's people", "account", accountID, "err", err)
		return nil
	}
	var out []string
	for _, mb := range members {
		if mb.Role != store.UserOwner {
			continue
		}
		if u, err := m.Store.User(mb.UserID); err == nil {
			out = append(out, u.Email)
		}
	}
	return out
}

func (m *Mailer) sources(d store.Domain, from, to time.Time) (int64, int64, []Source, error) {
	reports, err := m.Store.DMARCParsedReports(d.ID, from, to)
	if err != nil || len(reports) == 0 {
		return 0, 0, nil, err
	}
	known, err := m.Store.DMARCKnownSources(d.ID)
	if err != nil {
		return 0, 0, nil, err
	}
	var selectors []string
	for _, k := range d.Keys {
		selectors = append(selectors, k.Selector)
	}
	total, pass, sources := Sources(reports, known, selectors, m.SendingIPs, m.PTR)
	return total, pass, sources, nil
}

// digest sends last week's digest of d, once.
func (m *Mailer) digest(ctx context.Context, d store.Domain, owners []string, now time.Time) {
	to := weekOf(now)
	from := to.AddDate(0, 0, -7)
	total, pass, sources, err := m.sources(d, from, to.Add(-time.Nanosecond))
	if err != nil || total == 0 {
		return
	}
	first, err := m.Store.Mark(fmt.Sprintf("dmarc-digest:%d:%s", d.ID, from.Format(time.DateOnly)), now)
	if err != nil || !first {
		return
	}
	advice := Advise(m.currentPolicy(ctx, d), total, pass, sources)
	body := Digest(d.Name, from, to.Add(-time.Second), total, pass, sources, advice)
	m.send(ctx, owners, fmt.Sprintf("DMARC digest for %s, week of %s", d.Name, from.Format(time.DateOnly)), body)
}

// currentPolicy is the p= d publishes now.
func (m *Mailer) currentPolicy(ctx context.Context, d store.Domain) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	p, _ := LookupPublished(ctx, m.TXT, d.Name)
	return p.Policy
}

// alerts reports, once each, the unknown sources that sent more than
// AlertThreshold messages as d in a report of the last day.
func (m *Mailer) alerts(ctx context.Context, d store.Domain, owners []string, now time.Time) {
	_, _, sources, err := m.sources(d, now.Add(-24*time.Hour), now)
	if err != nil {
		return
	}
	for _, s := range sources {
		if s.ViaPostern || s.Known || s.Messages <= AlertThreshold {
			continue
		}
		first, err := m.Store.Mark(fmt.Sprintf("dmarc-alert:%d:%s", d.ID, s.IP), now)
		if err != nil || !first {
			continue
		}
		name := s.Hostname
		if name == "" {
			name = "no name"
		}
		body := fmt.Sprintf("A source Postern does not know sent %d messages as %s in a day (%d passed DMARC):\n\n  %s (%s)\n\n"+
			"If it is yours, mark it known; if not, someone may be using your domain: see who sends as %s.\n",
			s.Messages, d.Name, s.DmarcPass, s.IP, name, d.Name)
		m.send(ctx, owners, fmt.Sprintf("New sender as %s: %s", d.Name, s.IP), body)
	}
}

// send mails a text to each owner, through the relay's deliverer, signed
// when an account holds the hostname's domain.
func (m *Mailer) send(ctx context.Context, owners []string, subject, body string) {
	from := "dmarc-digest@" + m.Hostname
	for _, to := range owners {
		var h gomessage.Header
		h.Set("From", (&mail.Address{Name: "Postern", Address: from}).String())
		h.Set("To", to)
		h.Set("Subject", subject)
		h.Set("Date", m.Now().UTC().Format(time.RFC1123Z))
		h.Set("Message-ID", fmt.Sprintf("<dmarc-%d@%s>", m.Now().UnixNano(), m.Hostname))
		h.Set("MIME-Version", "1.0")
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		var buf bytes.Buffer
		w, err := gomessage.CreateWriter(&buf, h)
		if err != nil {
			continue
		}
		w.Write([]byte(strings.ReplaceAll(body, "\n", "\r\n")))
		w.Close()
		raw := buf.Bytes()
		var prefix []byte
		if d, err := m.Store.DomainByName(m.Hostname); err == nil {
			prefix = dkim.SignAs(d, raw)
		}
		domain := to[strings.LastIndexByte(to, '@')+1:]
		res, err := m.Mail.DeliverDomain(ctx, domain, relay.Envelope{From: from, To: []string{to}}, relay.Message{Prefix: prefix, Raw: raw})
		if err != nil || len(res.Recipients) != 1 || res.Recipients[0].Outcome != relay.Delivered {
			m.Log.Warn("dmarc: a digest or alert was not delivered", "to", to, "subject", subject, "err", err)
			continue
		}
		m.Log.Info("dmarc: sent", "to", to, "subject", subject)
	}
}
