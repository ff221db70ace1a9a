package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/internal/domainname"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postern/postern/internal/dkim"
	"github.com/postern/postern/internal/message"
	"github.com/postern/postern/internal/verp"
	"github.com/postern/postern/store"
)

// Store is what the relay needs of the store; every store.Backend is one.
type Store interface {
	ReleaseLeases(now time.Time) (int, error)
	Claim(req store.ClaimRequest) ([]store.QueueEntry, error)
	NextDue() (time.Time, bool, error)
	RecordAttempt(a store.Attempt) error
	// Defer hands back a claimed entry that could not start, counting
	// no attempt.
	Defer(e store.QueueEntry, due time.Time) error
	Server(id int64) (store.Server, error)
	Message(serverID int64, messageID string) (store.Message, error)
	RawMessage(serverID int64, messageID string) ([]byte, error)
	DomainByName(name string) (store.Domain, error)
	// AddTLSResults takes the counts of TLS sessions for the daily TLS
	// reports.
	AddTLSResults(results []store.TLSResult) error
	// QueueStats is read at each scrape of the queue metrics.
	QueueStats() ([]store.QueueStat, error)
}

// CPUShare admits the relay's CPU-heavy steps (signing) behind the work
// clients wait on; *cpushare.Share is one.
type CPUShare interface {
	Background(ctx context.Context) (release func(), err error)
	// Busy reports whether clients are waiting on work now: the relay
	// then keeps at most busyInFlight deliveries going.
	Busy() bool
}

// DomainDeliverer delivers to the mail exchangers of one domain;
// *MXDeliverer is one.
type DomainDeliverer interface {
	DeliverDomain(ctx context.Context, domain string, env Envelope, msg Message) (Result, error)
}

// Upstream delivers everything it is given to one server; *Smarthost is
// one.
type Upstream interface {
	Deliver(ctx context.Context, env Envelope, msg Message) (Result, error)
}

// Defaults of WorkerConfig.
const (
	DefaultWorkers   = 64
	DefaultPerServer = 16
	// DefaultPerDomain is Postfix's default_destination_concurrency_limit:
	// what receivers are used to from one sending MTA. At 8 the benchmark's
	// single destination bounded end-to-end delivery (a slot is held while
	// the message is signed as well as while it is sent): 20 delivered
	// 15% more, signed or not.
	DefaultPerDomain        = 20
	DefaultLease            = 30 * time.Minute
	DefaultRetryBase        = 5 * time.Minute
	DefaultRetryMaxInterval = 4 * time.Hour
	DefaultRetryJitter      = 0.2
	DefaultMaxLifetime      = 48 * time.Hour
	DefaultDrainTimeout     = 30 * time.Second

	// idlePoll bounds how long the scheduler sleeps without looking at
	// the queue, whatever it was told: a missed wake-up costs at most
	// this much delay.
	idlePoll = 30 * time.Second

	// busyDefer is how long an entry waits in the queue when one of its
	// destinations is at its PerDomain cap: the entry goes back to the
	// queue rather than hold a worker while it waits for a session slot.
	busyDefer = 250 * time.Millisecond

	// busyInFlight is how many deliveries the relay keeps going while
	// CPUShare says clients wait on the intake, and busyPoll how often it
	// looks again whether they still do. At 2 the intake's p99 at half
	// its peak was 15% lower than at 4, and end to end 25% slower: the
	// relay did almost nothing while a client sent.
	busyInFlight = 4
	busyPoll     = 5 * time.Millisecond
)

// WorkerConfig configures a Worker. Zero values take the defaults.
type WorkerConfig struct {
	// Store holds the queue and takes the events. Required.
	Store Store
	// MX delivers to recipient domains. Required.
	MX DomainDeliverer
	// Smarthost, if not nil, takes the mail of SmarthostDomains, or of
	// every domain if that list is empty, instead of MX.
	Smarthost        Upstream
	SmarthostDomains []string

	// ReturnPathDomain, if set, makes MAIL FROM a per-message address on
	// that domain, signed with ReturnPathKey (see package verp), so that
	// bounces and complaints arriving later name the message they are
	// about, and nobody can forge one. Otherwise MAIL FROM is the
	// envelope sender the client gave.
	ReturnPathDomain string
	ReturnPathKey    []byte

	// Workers caps deliveries in flight in all; PerServer caps those of
	// one server, so that one server's backlog leaves room for the others;
	// PerDomain caps concurrent sessions to one destination domain (or to
	// the smarthost).
	Workers, PerServer, PerDomain int

	// Lease is how long a claimed queue entry stays with this worker. An
	// attempt whose result cannot be recorded comes back when its lease
	// ends. Each delivery is bounded to 90% of it, so an attempt never
	// outlives its claim.
	Lease time.Duration

	// Retries of Transient recipients: RetryBase after the first attempt,
	// doubling after each one up to RetryMaxInterval, each interval
	// varied by ±RetryJitter (a fraction) so that messages deferred
	// together do not come back together.
	RetryBase, RetryMaxInterval time.Duration
	RetryJitter                 float64
	// MaxLifetime is how long after its receipt a message is tried: a
	// recipient still Transient past ReceivedAt+MaxLifetime bounces, with
	// the bounce type Transient (Postmark's type 2, "message delayed /
	// undeliverable"): the last reply was temporary, nobody refused the
	// address, so it must not become inactive.
	MaxLifetime time.Duration

	// DrainTimeout is how long Run waits, once its context is done, for
	// deliveries in flight to end by themselves; then they are canceled.
	DrainTimeout time.Duration

	// Logger gets one line per delivery (server, MessageID, destination,
	// outcome counts); recipient addresses and replies only at debug
	// level. Nil: discard.
	Logger *slog.Logger
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Rand returns a number in [0, 1) for the retry jitter; math/rand/v2's
	// Float64 if nil.
	Rand func() float64
	// Metrics, when set, gets the relay's metrics (see metrics.go).
	Metrics prometheus.Registerer
	// CPU, when set, admits each signature: the intake's messages go
	// first when both want the CPU. Nil: signatures run as they come.
	CPU CPUShare
}

// Worker is the delivery side: it claims due queue entries fairly across
// servers, signs each message once with its From domain's DKIM keys,
// delivers it per destination domain, and records one event per
// recipient and attempt.
type Worker struct {
	cfg       WorkerConfig
	log       *slog.Logger
	wake      chan struct{}
	viaSmart  map[string]bool // SmarthostDomains, lower case
	domains   *keyedLimiter
	signers   signerCache
	randMu    sync.Mutex
	running   sync.Mutex // one Run at a time
	smartDest string
	metrics   *metrics
	live      atomic.Bool // Run is delivering
	tlsCounts tlsCounter  // sessions for the TLS reports, not yet stored
}

// NewWorker checks cfg and fills in its defaults.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	if cfg.Store == nil {
		return nil, errors.New("relay: the worker needs a store")
	}
	if cfg.MX == nil && cfg.Smarthost == nil {
		return nil, errors.New("relay: the worker needs an MX deliverer or a smarthost")
	}
	if cfg.MX == nil && len(cfg.SmarthostDomains) > 0 {
		return nil, errors.New("relay: smarthost domains without MX delivery for the others")
	}
	positive := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	positive(&cfg.Workers, DefaultWorkers)
	positive(&cfg.PerServer, DefaultPerServer)
	positive(&cfg.PerDomain, DefaultPerDomain)
	if cfg.PerServer > cfg.Workers {
		cfg.PerServer = cfg.Workers
	}
	durations := []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.Lease, DefaultLease}, {&cfg.RetryBase, DefaultRetryBase},
		{&cfg.RetryMaxInterval, DefaultRetryMaxInterval}, {&cfg.MaxLifetime, DefaultMaxLifetime},
		{&cfg.DrainTimeout, DefaultDrainTimeout},
	}
	for _, d := range durations {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.RetryMaxInterval < cfg.RetryBase {
		cfg.RetryMaxInterval = cfg.RetryBase
	}
	if cfg.RetryJitter <= 0 || cfg.RetryJitter >= 1 {
		cfg.RetryJitter = DefaultRetryJitter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	cfg.ReturnPathDomain = domainname.Normalize(cfg.ReturnPathDomain)
	m, err := newMetrics(cfg.Metrics, cfg.Store, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("relay: metrics: %w", err)
	}
	w := &Worker{
		metrics:   m,
		cfg:       cfg,
		log:       cfg.Logger,
		wake:      make(chan struct{}, 1),
		domains:   newKeyedLimiter(cfg.PerDomain),
		smartDest: "[smarthost]",
	}
	if len(cfg.SmarthostDomains) > 0 {
		w.viaSmart = make(map[string]bool)
		for _, d := range cfg.SmarthostDomains {
			if d = domainname.Normalize(d); d != "" {
				w.viaSmart[d] = true
			}
		}
	}
	return w, nil
}

// Notify tells the worker that new mail is queued. It never blocks.
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// errDestinationBusy says that an entry did not start because one of its
// destinations is at its PerDomain cap.
var errDestinationBusy = errors.New("relay: destination at its session cap")

// errShutdown cancels the deliveries still running when Run's drain
// period ends.
var errShutdown = errors.New("relay: shutting down")

// finished is a delivery's note to the scheduler that its slot is free.
type finished struct{ serverID int64 }

// Run delivers until ctx is done. It first hands back every lease a
// previous process left (only one process has the store open, so they
// are all dead), then claims due entries, rotating across servers, as
// the caps allow, and sleeps until the next entry is due or Notify is
// called. Once ctx is done it claims nothing more, waits up to
// DrainTimeout for the deliveries in flight, cancels those still
// running, and returns when all have ended.
func (w *Worker) Run(ctx context.Context) {
	w.running.Lock()
	defer w.running.Unlock()
	// A store that cannot be reached now (a database restarting) delays
	// the start; it does not end the process.
	for retry := time.Second; ; retry = min(2*retry, idlePoll) {
		n, err := w.cfg.Store.ReleaseLeases(w.cfg.Now())
		if err == nil {
			if n > 0 {
				w.log.Info("relay: leases of a previous run released", "entries", n)
			}
			break
		}
		w.log.Error("relay: cannot release the leases of a previous run; trying again", "err", err, "in", retry.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
	}
	w.live.Store(true)
	defer w.live.Store(false)
	stopFlush, flushed := make(chan struct{}), make(chan struct{})
	go func() {
		w.flushTLSEvery(stopFlush)
		close(flushed)
	}()
	// After the drain below: the last deliveries' sessions count too.
	defer func() {
		close(stopFlush)
		<-flushed
	}()

	// Deliveries run under their own context, canceled only after the
	// drain period, not as soon as ctx is done.
	deliverCtx, cancelDeliveries := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelDeliveries(nil)

	done := make(chan finished, w.cfg.Workers)
	inFlight := 0
	perServer := map[int64]int{}
	var after int64
	free := func(f finished) {
		inFlight--
		if perServer[f.serverID]--; perServer[f.serverID] <= 0 {
			delete(perServer, f.serverID)
		}
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()

	for ctx.Err() == nil {
		// Take note of every delivery that ended, so one claim serves
		// them all.
		for drained := false; !drained; {
			select {
			case f := <-done:
				free(f)
			default:
				drained = true
			}
		}
		var wait time.Duration // 0: until a delivery ends or a wake-up
		slots := w.cfg.Workers - inFlight
		if w.cfg.CPU != nil && w.cfg.CPU.Busy() {
			slots = min(slots, busyInFlight-inFlight)
			wait = busyPoll
		}
		if slots > 0 {
			claimed, err := w.claim(slots, perServer, after)
			if err != nil {
				w.log.Error("relay: claim", "err", err)
				wait = time.Second
			}
			if len(claimed) > 0 {
				after = claimed[0].ServerID
			}
			for _, e := range claimed {
				inFlight++
				perServer[e.ServerID]++
				go func() {
					w.attempt(deliverCtx, e)
					done <- finished{e.ServerID}
				}()
			}
			if err == nil && len(claimed) < slots {
				// Everything due that the caps allow was claimed.
				wait = w.untilNextDue()
				if wait == 0 && inFlight == 0 {
					// Due now, yet not claimed: it became due
					// between the claim's clock reading and this
					// one (no server is at its cap with nothing in
					// flight). Claim again rather than sleep.
					wait = time.Millisecond
				}
			}
		}
		if wait == 0 && inFlight == 0 {
			wait = idlePoll
		}
		var tick <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		select {
		case <-ctx.Done():
		case <-w.wake:
		case f := <-done:
			free(f)
		case <-tick:
		}
		if tick != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}

	w.live.Store(false)

	// Drain: let the deliveries in flight finish, then cancel them.
	defer w.closeIdle()
	if inFlight > 0 {
		w.log.Info("relay: stopping; waiting for deliveries in flight", "deliveries", inFlight, "timeout", w.cfg.DrainTimeout.String())
		drain := time.NewTimer(w.cfg.DrainTimeout)
		defer drain.Stop()
		for inFlight > 0 {
			select {
			case f := <-done:
				free(f)
			case <-drain.C:
				w.log.Warn("relay: canceling deliveries in flight", "deliveries", inFlight)
				cancelDeliveries(errShutdown)
			}
		}
	}
}

// Running reports whether Run is delivering: it has started, taken back
// the leases of a previous run, and its context is not done. It is part
// of the readiness check.
func (w *Worker) Running() bool { return w.live.Load() }

// closeIdle ends the sessions the deliverers keep for reuse.
func (w *Worker) closeIdle() {
	type idleCloser interface{ CloseIdle() }
	for _, d := range []any{w.cfg.MX, w.cfg.Smarthost} {
		if c, ok := d.(idleCloser); ok {
			c.CloseIdle()
		}
	}
}

// claim leases up to slots due entries, each server within its cap.
func (w *Worker) claim(slots int, perServer map[int64]int, after int64) ([]store.QueueEntry, error) {
	// Allow runs inside the store's transaction, possibly more than once:
	// it reads a copy, never the scheduler's live counts.
	busy := make(map[int64]int, len(perServer))
	for id, n := range perServer {
		busy[id] = n
	}
	return w.cfg.Store.Claim(store.ClaimRequest{
		Now:   w.cfg.Now(),
		Lease: w.cfg.Lease,
		Max:   slots,
		Allow: func(serverID int64) int { return w.cfg.PerServer - busy[serverID] },
		After: after,
		Take:  w.destinationsFree(),
	})
}

// destinationsFree returns a ClaimRequest.Take for one claim: an entry is
// taken when every destination of it has a free slot, counting those the
// entries already taken in this claim will hold. An entry whose
// destination is full then stays in the queue, instead of being claimed
// and put back (two commits, and a busyDefer wait).
func (w *Worker) destinationsFree() func(store.QueueEntry, []store.QueueEntry) bool {
	held := map[string]int{} // by the entries taken so far
	counted := 0             // how many of them
	return func(e store.QueueEntry, taken []store.QueueEntry) bool {
		if len(taken) < counted { // the claim's transaction started over
			clear(held)
			counted = 0
		}
		for _, t := range taken[counted:] {
			for _, d := range w.destinations(t.Pending) {
				held[d.key]++
			}
		}
		counted = len(taken)
		for _, d := range w.destinations(e.Pending) {
			if w.domains.free(d.key)-held[d.key] <= 0 {
				return false
			}
		}
		return true
	}
}

// untilNextDue is how long to sleep before the next claim: until the
// earliest entry is due, or, when that is already past (its server is at
// its cap), until a delivery ends (0).
func (w *Worker) untilNextDue() time.Duration {
	next, ok, err := w.cfg.Store.NextDue()
	if err != nil {
		w.log.Error("relay: next due", "err", err)
		return time.Second
	}
	if !ok {
		return idlePoll
	}
	d := next.Sub(w.cfg.Now())
	switch {
	case d <= 0:
		return 0
	case d > idlePoll:
		return idlePoll
	}
	return d
}

// backoff is the interval before the retry that follows attempt number
// attempts (0 for the first attempt).
func (w *Worker) backoff(attempts int) time.Duration {
	d := w.cfg.RetryBase
	for i := 0; i < attempts && d < w.cfg.RetryMaxInterval; i++ {
		d *= 2
	}
	d = min(d, w.cfg.RetryMaxInterval)
	w.randMu.Lock()
	r := w.cfg.Rand()
	w.randMu.Unlock()
	return time.Duration(float64(d) * (1 + w.cfg.RetryJitter*(2*r-1)))
}

// destination is one delivery of an attempt: the recipients that go
// through the smarthost, or those of one domain.
type destination struct {
	key       string // domain, or the smarthost's key
	domain    string // "" for the smarthost
	smarthost bool
	to        []string
}

// destinations groups recipients by where they go, in a stable order.
func (w *Worker) destinations(rcpts []string) []*destination {
	byKey := map[string]*destination{}
	var out []*destination
	for _, r := range rcpts {
		domain := ""
		if i := strings.LastIndexByte(r, '@'); i >= 0 {
			domain = domainname.Normalize(r[i+1:])
		}
		d := &destination{key: domain, domain: domain}
		if w.cfg.Smarthost != nil && (w.viaSmart == nil || w.viaSmart[domain]) {
			d = &destination{key: w.smartDest, smarthost: true}
		}
		if prev := byKey[d.key]; prev != nil {
			d = prev
		} else {
			byKey[d.key] = d
			out = append(out, d)
		}
		d.to = append(d.to, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

// attempt makes one delivery attempt of a claimed entry and records it.
func (w *Worker) attempt(ctx context.Context, e store.QueueEntry) {
	// Never outlive the lease: past it the entry may be claimed again.
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Lease*9/10)
	defer cancel()
	start := w.cfg.Now()
	log := w.log.With("server", e.ServerID, "message_id", e.MessageID)

	a, err := w.prepare(ctx, e, log)
	if errors.Is(err, errDestinationBusy) {
		// Nothing was tried: back to the queue, due again shortly, and
		// the worker is free for other destinations meanwhile.
		if err := w.cfg.Store.Defer(e, w.cfg.Now().Add(busyDefer)); err != nil {
			log.Error("relay: cannot defer an entry whose destination is busy; it comes back when its lease ends",
				"err", err, "lease", w.cfg.Lease.String())
		}
		return
	}
	if err != nil {
		// Nothing was sent: the entry stays leased and comes back when
		// the lease ends, by which time the store may work again.
		log.Error("relay: cannot read the message; retrying after the lease", "err", err, "lease", w.cfg.Lease.String())
		return
	}
	if err := w.cfg.Store.RecordAttempt(a); err != nil {
		log.Error("relay: cannot record the attempt; the entry comes back when its lease ends",
			"err", err, "lease", w.cfg.Lease.String(), "took", w.cfg.Now().Sub(start).String())
		return
	}
	w.metrics.recorded(a, w.cfg.Now().Sub(start))
}

// prepare reads the message, signs and delivers it, and returns the
// attempt to record. (A Sandbox server's messages are never queued: see
// store.Accept.)
func (w *Worker) prepare(ctx context.Context, e store.QueueEntry, log *slog.Logger) (store.Attempt, error) {
	srv, err := w.cfg.Store.Server(e.ServerID)
	if err != nil {
		return store.Attempt{}, fmt.Errorf("server %d: %w", e.ServerID, err)
	}
	// Take a session slot for every destination now, or none: an
	// attempt never waits for a slot while it holds a worker, so
	// destinations whose peers are stuck cannot take the whole pool.
	dests := w.destinations(e.Pending)
	releases := make([]func(), len(dests))
	for i, d := range dests {
		release, ok := w.domains.tryAcquire(d.key)
		if !ok {
			for _, r := range releases[:i] {
				r()
			}
			log.Debug("relay: destination at its cap; deferred", "destination", d.key, "for", busyDefer.String())
			return store.Attempt{}, errDestinationBusy
		}
		releases[i] = release
	}
	var wg sync.WaitGroup
	defer func() {
		// Slots not handed to a delivery (an early return): free them.
		for _, r := range releases {
			if r != nil {
				r()
			}
		}
	}()

	msg, err := w.cfg.Store.Message(e.ServerID, e.MessageID)
	if err != nil {
		return store.Attempt{}, fmt.Errorf("message: %w", err)
	}
	raw, err := w.cfg.Store.RawMessage(e.ServerID, e.MessageID)
	if err != nil {
		return store.Attempt{}, fmt.Errorf("raw message: %w", err)
	}
	// Before signing: the signature covers the bytes that are sent.
	raw = fitLines(raw)

	a := store.Attempt{Entry: e}
	signature, signed := e.Signature, ""
	if e.Signed {
		signed = dkim.SigningDomain(signature)
	} else {
		signature, signed, err = w.sign(ctx, srv, raw, log)
		if err != nil {
			return store.Attempt{}, err
		}
		a.Signature, a.Signed = signature, true
	}

	env := Envelope{From: msg.EnvelopeFrom}
	if w.cfg.ReturnPathDomain != "" {
		env.From = verp.Local(w.cfg.ReturnPathKey, e.ServerID, e.MessageID) + "@" + w.returnPathDomain(srv, raw)
	}
	env.SMTPUTF8 = !isASCII(env.From)
	for _, r := range e.Pending {
		env.SMTPUTF8 = env.SMTPUTF8 || !isASCII(r)
	}
	out := Message{Prefix: signature, Raw: raw}

	outcomes := make([][]store.Outcome, len(dests))
	for i, d := range dests {
		release := releases[i]
		releases[i] = nil // deliver frees it as soon as its session ends
		wg.Add(1)
		go func() {
			defer wg.Done()
			denv := env
			denv.To = d.to
			outcomes[i] = w.deliver(ctx, d, release, denv, out, msg, signed, log)
		}()
	}
	wg.Wait()

	a.At = w.cfg.Now()
	transient := false
	for _, os := range outcomes {
		for _, o := range os {
			a.Outcomes = append(a.Outcomes, o)
			transient = transient || o.Type == store.EventTransient
		}
	}
	if len(a.Outcomes) < len(e.Pending) {
		// Deliveries cut short by shutdown recorded nothing for their
		// recipients, which stay pending: due again at once, so the next
		// run takes them up first.
		a.Retry = a.At
	}
	if transient {
		a.Retry = a.At.Add(w.backoff(e.Attempts))
		if deadline := msg.ReceivedAt.Add(w.cfg.MaxLifetime); a.Retry.After(deadline) {
			// One last try at the end of the lifetime.
			a.Retry = deadline
		}
	}
	return a, nil
}

// returnPathDomain is where a message's return path is: its From
// domain's own Return-Path domain once verified (its CNAME leads to the
// inbound listener), else ReturnPathDomain.
func (w *Worker) returnPathDomain(srv store.Server, raw []byte) string {
	if name, err := message.FromDomain(raw); err == nil {
		if d, err := w.cfg.Store.DomainByName(name); err == nil && d.AccountID == srv.AccountID && d.ReturnPathVerified && d.ReturnPathDomain != "" {
			return d.ReturnPathDomain
		}
	}
	return w.cfg.ReturnPathDomain
}

// deliver runs one destination's delivery, holding the destination's
// session slot that release frees, and turns its results into outcomes.
// Recipients whose delivery was cut short by shutdown get no outcome.
func (w *Worker) deliver(ctx context.Context, d *destination, release func(), env Envelope, msg Message, m store.Message, signed string, log *slog.Logger) []store.Outcome {
	var (
		res Result
		err error
	)
	if d.smarthost {
		res, err = w.cfg.Smarthost.Deliver(ctx, env, msg)
	} else {
		res, err = w.cfg.MX.DeliverDomain(ctx, d.domain, env, msg)
	}
	release()

	now := w.cfg.Now()
	expired := !now.Before(m.ReceivedAt.Add(w.cfg.MaxLifetime))
	details := store.EventDetails{DestinationServer: res.Host, Signed: signed}
	if res.IP.IsValid() {
		details.DestinationIP = res.IP.String()
	}
	details.TLSPolicy, details.TLSVerified = res.TLS.Policy, res.TLS.Verified
	if res.TLS.Version != 0 {
		details.TLS, details.TLSCipher = tls.VersionName(res.TLS.Version), tls.CipherSuiteName(res.TLS.Cipher)
	}
	w.countTLS(d.domain, res.TLSSessions)
	var outcomes []store.Outcome
	var delivered, transient, bounced int
	for _, r := range res.Recipients {
		if r.Outcome == Transient && errors.Is(context.Cause(ctx), errShutdown) {
			continue // cut short by shutdown: no attempt to speak of
		}
		o := store.Outcome{Recipient: r.Address, Details: details}
		o.Details.DeliveryMessage = r.Reply.String()
		switch {
		case r.Outcome == Delivered:
			o.Type = store.EventDelivered
			delivered++
		case r.Outcome == Bounced:
			o.Type = store.EventBounced
			o.Details.BounceType, o.Details.BounceTypeCode = r.Bounce.String(), int(r.Bounce)
			o.Details.Summary = bounceSummary(r.Bounce)
			o.Inactivate = r.Bounce.Inactivates()
			bounced++
		case expired:
			o.Type = store.EventBounced
			o.Details.BounceType, o.Details.BounceTypeCode = BounceTransient.String(), int(BounceTransient)
			o.Details.Summary = fmt.Sprintf("Gave up: still deferred %s after the message was received (the maximum lifetime)",
				w.cfg.MaxLifetime)
			bounced++
		default:
			o.Type = store.EventTransient
			transient++
		}
		outcomes = append(outcomes, o)
		log.Debug("relay: recipient", "recipient", r.Address, "event", o.Type, "reply", o.Details.DeliveryMessage)
	}
	attrs := []any{"destination", d.key, "host", res.Host, "delivered", delivered, "deferred", transient, "bounced", bounced}
	if res.IP.IsValid() {
		attrs = append(attrs, "ip", res.IP.String())
	}
	if details.TLSPolicy != "" {
		attrs = append(attrs, "tls", describeTLS(res.TLS))
	}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if len(outcomes) < len(res.Recipients) {
		attrs = append(attrs, "interrupted", len(res.Recipients)-len(outcomes))
	}
	log.Info("relay: delivery", attrs...)
	return outcomes
}

// bounceSummary says in words what a bounce type means.
func bounceSummary(b BounceType) string {
	switch b {
	case BounceHard:
		return "The server refused the address: it does not exist. It is now inactive for this server."
	case BounceBadEmailAddress:
		return "The address is not valid. It is now inactive for this server."
	case BounceDNSError:
		return "The recipient's domain accepts no mail or does not exist."
	case BounceSoft:
		return "The server refused the message for now (mailbox full, message too big, or similar)."
	case BounceBlocked:
		return "The server refused the message by policy (spam filter, block list, reputation)."
	case BounceDMARCPolicy:
		return "The server refused the message because of the sender domain's DMARC policy."
	}
	return "The server refused the message."
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// keyedLimiter caps concurrent holders per key. Nobody waits for a
// slot: an attempt that finds its key full goes back to the queue.
type keyedLimiter struct {
	max   int
	mu    sync.Mutex
	slots map[string]int // holders; a key goes when it has none
}

func newKeyedLimiter(max int) *keyedLimiter {
	return &keyedLimiter{max: max, slots: map[string]int{}}
}

// free returns how many slots key has free now.
func (l *keyedLimiter) free(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.max - l.slots[key]
}

// tryAcquire takes a slot for key if one is free, and returns its
// release, to be called once.
func (l *keyedLimiter) tryAcquire(key string) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.slots[key] >= l.max {
		return nil, false
	}
	l.slots[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.slots[key]--; l.slots[key] <= 0 {
				delete(l.slots, key)
			}
			l.mu.Unlock()
		})
	}, true
}
