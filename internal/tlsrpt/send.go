package tlsrpt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// Store is what sending reports needs of the store.
type Store interface {
	TLSReportDays(before time.Time) ([]store.TLSReportDay, error)
	DeleteTLSReportDay(day time.Time, domain string) error
	DomainByName(name string) (store.Domain, error)
}

// Mailer delivers a report by mail; *relay.MXDeliverer is one, so that
// reports go out as any mail does, under the same TLS policies.
type Mailer interface {
	DeliverDomain(ctx context.Context, domain string, env relay.Envelope, msg relay.Message) (relay.Result, error)
}

// GiveUpAfter is how long after its day a report that cannot be sent is
// kept trying.
const GiveUpAfter = 3 * 24 * time.Hour

// Sender sends the reports of complete days.
type Sender struct {
	Store Store
	TXT   relay.TXTResolver
	Mail  Mailer
	// HTTP posts reports to https: addresses; it must refuse private
	// addresses (see privateaddr.Dialer).
	HTTP *http.Client
	// Submitter is Postern's host name: the report's organisation, the
	// domain of its sender address and of its DKIM signature, when an
	// account has that domain with keys.
	Submitter string
	Now       func() time.Time
	Log       *slog.Logger
}

// SendDue sends every report of a day before today, and forgets those
// sent, those whose domain asks for none, and those past GiveUpAfter.
func (s *Sender) SendDue(ctx context.Context) {
	now := s.Now()
	days, err := s.Store.TLSReportDays(store.TLSDay(now))
	if err != nil {
		s.Log.Error("tlsrpt: cannot list the reports to send", "err", err)
		return
	}
	for _, d := range days {
		if ctx.Err() != nil {
			return
		}
		done, err := s.send(ctx, d, now)
		switch {
		case done:
		case now.Sub(d.Day) > GiveUpAfter:
			s.Log.Warn("tlsrpt: giving up on a report", "domain", d.Domain, "day", d.Day.Format(time.DateOnly), "err", err)
			done = true
		default:
			s.Log.Info("tlsrpt: report not sent; trying again later", "domain", d.Domain, "day", d.Day.Format(time.DateOnly), "err", err)
		}
		if done {
			if err := s.Store.DeleteTLSReportDay(d.Day, d.Domain); err != nil {
				s.Log.Error("tlsrpt: cannot forget a sent report", "domain", d.Domain, "err", err)
			}
		}
	}
}

// send sends one report to every address the domain asks for. done: it
// is sent (or refused for good, or not asked for) and can be forgotten.
func (s *Sender) send(ctx context.Context, d store.TLSReportDay, now time.Time) (done bool, err error) {
	txts, err := s.TXT.LookupTXT(ctx, "_smtp._tls."+d.Domain)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return true, nil // no record: the domain wants no reports
		}
		return false, err
	}
	rec, err := FindRecord(txts)
	if err != nil {
		return true, nil
	}
	report := Build(d, s.Submitter)
	var errs []error
	for _, rua := range rec.RUA {
		if err := s.sendTo(ctx, report, d.Domain, rua, now); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", rua, err))
		} else {
			s.Log.Info("tlsrpt: report sent", "domain", d.Domain, "day", d.Day.Format(time.DateOnly), "to", rua)
		}
	}
	return len(errs) == 0, errors.Join(errs...)
}

func (s *Sender) sendTo(ctx context.Context, r Report, domain, rua string, now time.Time) error {
	u, err := url.Parse(rua)
	if err != nil {
		return err
	}
	if u.Scheme == "https" {
		return s.post(ctx, r, u.String())
	}
	to, err := url.PathUnescape(strings.SplitN(u.Opaque, "?", 2)[0])
	if err != nil {
		return err
	}
	at := strings.LastIndexByte(to, '@')
	if at < 0 {
		return fmt.Errorf("%q is not an address", to)
	}
	from := "tlsrpt-noreply@" + s.Submitter
	id := make([]byte, 8)
	rand.Read(id)
	raw, err := Message(r, domain, from, to, hex.EncodeToString(id)+"@"+s.Submitter, now)
	if err != nil {
		return err
	}
	res, err := s.Mail.DeliverDomain(ctx, to[at+1:], relay.Envelope{From: from, To: []string{to}}, relay.Message{Prefix: s.sign(raw), Raw: raw})
	if len(res.Recipients) == 1 {
		switch rr := res.Recipients[0]; rr.Outcome {
		case relay.Delivered:
			return nil
		case relay.Bounced:
			s.Log.Warn("tlsrpt: the report address refused the report", "domain", domain, "to", to, "reply", rr.Reply.String())
			return nil // a retry will not help
		default:
			return fmt.Errorf("deferred: %s", rr.Reply.String())
		}
	}
	return err
}

// sign signs raw with the submitter domain's DKIM keys, if an account
// holds that domain (RFC 8460 §5.3 asks for a signature).
func (s *Sender) sign(raw []byte) []byte {
	d, err := s.Store.DomainByName(s.Submitter)
	if err != nil {
		return nil
	}
	return dkim.SignAs(d, raw)
}

func (s *Sender) post(ctx context.Context, r Report, target string) error {
	gz, err := r.Gzip()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", target, resp.Status)
	}
	return nil
}
