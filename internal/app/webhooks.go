package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/privateaddr"
	"github.com/postern/postern/relay"
	"github.com/postern/postern/webhook"
)

// newDispatcher builds the webhook caller: its client dials only public
// addresses (checked after DNS, at every call) unless
// webhook-allow-private.
func newDispatcher(cfg *config.Config, st webhook.Store, log *slog.Logger, reg prometheus.Registerer) (*webhook.Dispatcher, error) {
	schedule, err := cfg.WebhookSchedule()
	if err != nil {
		return nil, err
	}
	dialer := &privateaddr.Dialer{Resolve: relay.NewResolver(cfg.DNS).LookupIP, AllowPrivate: cfg.WebhookAllowPrivate}
	client := &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 4},
		Timeout:   webhook.Timeout,
		// A redirect would lead the call where its URL was not checked.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return webhook.New(webhook.Config{Store: st, Client: client, Schedule: schedule, Logger: log, Metrics: reg})
}

// checkWebhookURL refuses, when a webhook is created or changed, a URL
// whose host is or resolves to a private address, unless
// webhook-allow-private.
func checkWebhookURL(cfg *config.Config) func(context.Context, *url.URL) error {
	resolver := relay.NewResolver(cfg.DNS)
	return func(ctx context.Context, u *url.URL) error {
		if cfg.WebhookAllowPrivate {
			return nil
		}
		host := u.Hostname()
		var addrs []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{ip}
		} else {
			var err error
			if addrs, err = resolver.LookupIP(ctx, host); err != nil {
				var dnsErr *net.DNSError
				if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
					return fmt.Errorf("%s does not resolve", host)
				}
				return fmt.Errorf("%s could not be resolved: %v", host, err)
			}
		}
		for _, a := range addrs {
			if privateaddr.Is(a) {
				return fmt.Errorf("%s is at %s, a loopback, private or link-local address (webhook-allow-private is off)", host, a)
			}
		}
		return nil
	}
}
