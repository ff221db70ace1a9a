// Package webhook calls servers' webhooks: it takes the calls the store's
// outbox holds (filed with the events that caused them), posts each with
// Postmark's headers and a signature of Postern's own, and retries on
// Postmark's schedule.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/store"
)

// Store is what calling webhooks needs of the store; every store.Backend
// is one.
type Store interface {
	Webhook(serverID, id int64) (store.Webhook, error)
	ReleaseWebhookLeases(now time.Time) (int, error)
	ClaimWebhookDeliveries(now time.Time, lease time.Duration, max int) ([]store.WebhookDelivery, error)
	FinishWebhookDelivery(d store.WebhookDelivery, attempt store.WebhookAttempt, next *time.Time) error
	WebhookOutboxDepth() (int, error)
}

// DefaultSchedule is Postmark's: the waits before each retry.
var DefaultSchedule = []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 15 * time.Minute}

// Timeout bounds one call.
const Timeout = 10 * time.Second

// Results of postern_webhook_requests_total.
const (
	ResultDelivered = "delivered" // a 2xx answer
	ResultRetrying  = "retrying"  // a timeout, network error, 408, 429 or 5xx; tried again later
	ResultGivenUp   = "given_up"  // the same, after the last retry
	ResultRefused   = "refused"   // any other answer: not retried
)

// Results lists every result label.
var Results = []string{ResultDelivered, ResultRetrying, ResultGivenUp, ResultRefused}

// Config configures a Dispatcher.
type Config struct {
	Store Store
	// Client makes the calls; its transport must refuse private
	// addresses unless the operator allows them (privateaddr.Dialer).
	Client *http.Client
	// Schedule is the wait before each retry; DefaultSchedule if nil.
	Schedule []time.Duration
	// Concurrency caps calls in flight; 16 if zero.
	Concurrency int
	// Poll is how often the outbox is looked at when nothing wakes the
	// dispatcher; a second if zero.
	Poll   time.Duration
	Now    func() time.Time // time.Now if nil
	Logger *slog.Logger     // discard if nil
	// Metrics, if set, gets postern_webhook_requests_total and
	// postern_webhook_outbox_depth.
	Metrics prometheus.Registerer
}

// Dispatcher calls webhooks until its Run ends.
type Dispatcher struct {
	cfg      Config
	wake     chan struct{}
	requests *prometheus.CounterVec
}

// lease is how long a claimed call stays this dispatcher's: past it, a
// call cut short by a crash is made again.
const lease = 2 * time.Minute

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Client == nil {
		return nil, errors.New("webhook: a store and an HTTP client are required")
	}
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{cfg: cfg, wake: make(chan struct{}, 1), requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postern_webhook_requests_total",
		Help: "Webhook calls, by server ID, trigger (Delivery, Bounce) and result: delivered (2xx), retrying, given_up (after the last retry), refused (a 4xx other than 408 and 429: not retried).",
	}, []string{"server", "trigger", "result"})}
	if cfg.Metrics != nil {
		depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "postern_webhook_outbox_depth",
			Help: "Webhook calls waiting to be made or retried, read from the store at each scrape.",
		}, func() float64 {
			n, err := cfg.Store.WebhookOutboxDepth()
			if err != nil {
				return -1
			}
			return float64(n)
		})
		for _, c := range []prometheus.Collector{d.requests, depth} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// Notify wakes the dispatcher: an event may have filed calls.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run first hands back the calls this node held when it stopped (a call
// cut short by a crash is made again at once, with its trace ID), then
// makes the due calls until ctx is done, and waits for those in flight.
func (d *Dispatcher) Run(ctx context.Context) {
	for {
		n, err := d.cfg.Store.ReleaseWebhookLeases(d.cfg.Now())
		if err == nil {
			if n > 0 {
				d.cfg.Logger.Info("webhook: calls of a previous run handed back", "calls", n)
			}
			break
		}
		d.cfg.Logger.Error("webhook: cannot hand back the calls of a previous run; trying again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.Poll):
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, d.cfg.Concurrency)
	for ctx.Err() == nil {
		free := d.cfg.Concurrency - len(slots)
		var calls []store.WebhookDelivery
		if free > 0 {
			var err error
			calls, err = d.cfg.Store.ClaimWebhookDeliveries(d.cfg.Now(), lease, free)
			if err != nil {
				d.cfg.Logger.Error("webhook: cannot claim calls", "err", err)
			}
		}
		for _, c := range calls {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-slots; wg.Done() }()
				d.call(ctx, c)
			}()
		}
		if len(calls) == free && free > 0 {
			continue // there may be more due
		}
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-time.After(d.cfg.Poll):
		}
	}
}

// call makes one call and records it.
func (d *Dispatcher) call(ctx context.Context, c store.WebhookDelivery) {
	log := d.cfg.Logger.With("server", c.ServerID, "webhook", c.WebhookID, "trigger", c.Trigger, "trace_id", c.TraceID)
	w, err := d.cfg.Store.Webhook(c.ServerID, c.WebhookID)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted: its calls went with it
	}
	if err != nil {
		log.Error("webhook: cannot read the webhook; the call comes back when its lease ends", "err", err)
		return
	}
	now := d.cfg.Now()
	attempt := store.WebhookAttempt{WebhookID: w.ID, At: now, Trigger: c.Trigger, TraceID: c.TraceID}
	var next *time.Time
	result := ResultDelivered
	if w.Paused {
		attempt.Error = "the webhook is paused: the call was dropped"
		result = ResultGivenUp
	} else {
		status, err := d.post(ctx, w, c, len(d.cfg.Schedule)-c.Attempts, now)
		attempt.Status, attempt.Duration = status, d.cfg.Now().Sub(now)
		switch {
		case err != nil:
			attempt.Error = err.Error()
		case status/100 != 2:
			attempt.Error = "the receiver answered " + strconv.Itoa(status) + " " + http.StatusText(status)
		}
		retryable := err != nil || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
		switch {
		case err == nil && status/100 == 2:
		case retryable && c.Attempts < len(d.cfg.Schedule):
			at := d.cfg.Now().Add(d.cfg.Schedule[c.Attempts])
			next, result = &at, ResultRetrying
		case retryable:
			result = ResultGivenUp
		default:
			result = ResultRefused
		}
	}
	c.Attempts++
	if ctx.Err() != nil && attempt.Status == 0 {
		return // cut short by shutdown: the call comes back when its lease ends
	}
	if err := d.cfg.Store.FinishWebhookDelivery(c, attempt, next); err != nil {
		log.Error("webhook: cannot record the call; it is made again when its lease ends", "err", err)
	}
	d.requests.WithLabelValues(strconv.FormatInt(c.ServerID, 10), c.Trigger, result).Inc()
	log.Info("webhook: call", "status", attempt.Status, "result", result, "duration", attempt.Duration.String(), "err", attempt.Error)
}

// post sends the payload to w's URL and returns the answer's status; the
// error is a failure to get one (network, timeout).
func (d *Dispatcher) post(ctx context.Context, w store.Webhook, c store.WebhookDelivery, retriesLeft int, now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(c.Payload))
	if err != nil {
		return 0, err
	}
	for _, h := range w.HTTPHeaders {
		req.Header.Set(h.Name, h.Value)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Postern")
	req.Header.Set("X-PM-Retries-Remaining", strconv.Itoa(max(retriesLeft, 0)))
	req.Header.Set("X-PM-Webhook-Trace-Id", c.TraceID)
	req.Header.Set("X-Postern-Signature", Sign(w.Secret, now, c.Payload))
	if w.HTTPAuth != nil && w.HTTPAuth.Username != "" {
		req.SetBasicAuth(w.HTTPAuth.Username, w.HTTPAuth.Password)
	}
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// Sign is the X-Postern-Signature of body sent at t with secret:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
