package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/postern/postern/dmarc"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/internal/tlsrpt"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/store"
)

// tlsReportInterval is how often the reports of complete days are sent:
// hourly, so that a day's reports leave within an hour of its end, and a
// report that could not be sent is tried again.
const tlsReportInterval = time.Hour

// runTLSReports sends the TLS reports of complete days every
// tlsReportInterval until ctx is done, on one node at a time.
func runTLSReports(ctx context.Context, st any, sender *tlsrpt.Sender, log *slog.Logger) {
	t := time.NewTicker(tlsReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		exclusively(ctx, st, "tlsrpt", log, func() { sender.SendDue(ctx) })
	}
}

// tlsReports is the sender of this node's TLS reports: by mail through
// the relay's MX deliverer, or by HTTPS to public addresses.
func (a *App) tlsReports() *tlsrpt.Sender {
	resolver := relay.NewResolver(a.cfg.DNS)
	dialer := &privateaddr.Dialer{Resolve: resolver.LookupIP, AllowPrivate: a.cfg.AllowPrivateDestinations}
	return &tlsrpt.Sender{
		Store:     a.Store,
		TXT:       resolver,
		Mail:      a.mx,
		HTTP:      &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}, Timeout: time.Minute},
		Submitter: a.cfg.Hostname,
		Now:       time.Now,
		Log:       a.log,
	}
}

// previewTLSReport is GET /tlsrpt's: the report of day to domain as it
// would be sent, with this node's counts not yet stored.
func (a *App) previewTLSReport(day time.Time, domain string) (any, bool, error) {
	a.worker.FlushTLS()
	d, err := a.Store.TLSReportDay(store.TLSDay(day), domain)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return tlsrpt.Build(d, a.cfg.Hostname), true, nil
}

// dmarcMailer sends the weekly DMARC digests and the alerts about new
// senders, through the relay's MX deliverer.
func (a *App) dmarcMailer() *dmarc.Mailer {
	resolver := relay.NewResolver(a.cfg.DNS)
	return &dmarc.Mailer{
		Store: a.Store, Mail: a.mx, TXT: resolver, Hostname: a.cfg.Hostname,
		SendingIPs: sendingIPs(a.cfg), PTR: a.ptr.name, Now: time.Now, Log: a.log,
	}
}

// runDMARCMail sends what the DMARC mailer has due, every hour, on one
// node at a time.
func runDMARCMail(ctx context.Context, st any, m *dmarc.Mailer, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		exclusively(ctx, st, "dmarc-mail", log, func() { m.Run(ctx) })
	}
}
