package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/app"
	"github.com/postern/postern/internal/bench"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

const fillUsage = `Usage: postern bench fill [-data DIR | -store DSN] [flags]

Fills a store, while no postern serve uses it, with -messages messages
across -servers Sandbox servers named fill-1, fill-2, ... of the first
account (initialising the store if it is new), received over the last
-days days, through the store's normal path, many at once so that the
store groups its commits. It prints a token of fill-1 for postern bench.
Then, as asked, it measures searches (-search N), each server's stats,
and the retention purge of what is older than -purge-older days, with the
longest wait of an enqueue made meanwhile.

  postern bench fill -data /tmp/big -messages 1000000 -servers 1000
  postern bench fill -data /tmp/big -messages 0 -search 2000 -purge-older 15

`

// QueryLatency is one search query's latencies.
type QueryLatency struct{ P50Ms, P99Ms, MaxMs float64 }

// FillResult is what postern bench fill -json prints.
type FillResult struct {
	Messages      int
	Servers       int
	FillSeconds   float64
	FillPerSecond float64
	Token         string  `json:",omitempty"` // a token of fill-1, when this run created it
	StoreBytes    int64   `json:",omitempty"` // the bbolt file
	SearchP50Ms   float64 `json:",omitempty"`
	SearchP99Ms   float64 `json:",omitempty"`
	SearchMaxMs   float64 `json:",omitempty"`
	// SearchByQuery is the same by query (bench.SearchQueries' names).
	SearchByQuery  map[string]QueryLatency `json:",omitempty"`
	StatsP50Ms     float64                 `json:",omitempty"`
	StatsP99Ms     float64                 `json:",omitempty"`
	Purged         int                     `json:",omitempty"`
	PurgeSeconds   float64                 `json:",omitempty"`
	PurgePerSecond float64                 `json:",omitempty"`
	ProbeP50Ms     float64                 `json:",omitempty"`
	ProbeP99Ms     float64                 `json:",omitempty"`
	ProbeMaxMs     float64                 `json:",omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func runFill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench fill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fillUsage); fs.PrintDefaults() }
	dataDir := fs.String("data", "./postern-data", "data directory of the bbolt store")
	dsn := fs.String("store", "", "a PostgreSQL DSN instead of -data")
	messages := fs.Int("messages", 1_000_000, "messages to add")
	servers := fs.Int("servers", 1000, "servers to spread them over")
	days := fs.Int("days", 30, "received over this many days before now")
	workers := fs.Int("workers", 64, "concurrent enqueues")
	searches := fs.Int("search", 0, "then time this many searches (and each server's stats)")
	purgeOlder := fs.Int("purge-older", 0, "then purge, timed, the messages older than this many days (0: no purge)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	quiet := fs.Bool("quiet", false, "no progress bar")
	showProgress := fs.Bool("progress", false, "show the progress bar even if stderr is not a terminal")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench fill: unexpected argument %q", fs.Arg(0))
	}
	if *messages < 0 || *servers <= 0 || *days <= 0 || *searches < 0 || *purgeOlder < 0 {
		return errors.New("bench fill: -messages, -search and -purge-older must be 0 or more, -servers and -days more than 0")
	}
	loc := *dataDir
	if *dsn != "" {
		loc = *dsn
	}
	backend, err := app.OpenLocation(loc, *dsn == "" && bolt.Exists(loc))
	if err != nil {
		return fmt.Errorf("bench fill: %w", err)
	}
	defer backend.Close()
	st, ok := backend.(bench.FillStore)
	if !ok {
		return errors.New("bench fill: this backend cannot be filled")
	}
	now := time.Now()
	if _, err := auth.Init(backend, now); err != nil && !errors.Is(err, store.ErrInitialized) {
		return fmt.Errorf("bench fill: initialising: %w", err)
	}
	accounts, err := backend.Accounts()
	if err != nil || len(accounts) == 0 {
		return fmt.Errorf("bench fill: no account (%v)", err)
	}
	srvs, token, err := fillServers(backend, accounts[0].ID, *servers, now)
	if err != nil {
		return fmt.Errorf("bench fill: %w", err)
	}
	res := FillResult{Messages: *messages, Servers: len(srvs), Token: token}

	var out io.Writer = io.Discard
	if !*quiet && (*showProgress || isTerminal(os.Stderr)) {
		out = stderr
	}
	var mu sync.Mutex
	bar := newProgress(out, *messages, time.Now)
	start := time.Now()
	err = bench.Fill(ctx, st, bench.FillOptions{Messages: *messages, Servers: srvs, Days: *days, Now: now, Workers: *workers, Seed: uint64(now.UnixNano())},
		func() { mu.Lock(); bar.add(); mu.Unlock() })
	bar.done()
	if err != nil {
		return fmt.Errorf("bench fill: %w", err)
	}
	res.FillSeconds = time.Since(start).Seconds()
	if res.FillSeconds > 0 {
		res.FillPerSecond = float64(*messages) / res.FillSeconds
	}
	if *dsn == "" {
		if fi, err := os.Stat(bolt.Path(loc)); err == nil {
			res.StoreBytes = fi.Size()
		}
	}
	if *searches > 0 {
		took, byQuery, err := bench.SearchLatency(st, srvs, *searches, uint64(now.UnixNano()))
		if err != nil {
			return fmt.Errorf("bench fill: %w", err)
		}
		res.SearchP50Ms, res.SearchP99Ms, res.SearchMaxMs = ms(took.Quantile(0.5)), ms(took.Quantile(0.99)), ms(took.Quantile(1))
		res.SearchByQuery = make(map[string]QueryLatency, len(byQuery))
		for name, l := range byQuery {
			res.SearchByQuery[name] = QueryLatency{P50Ms: ms(l.Quantile(0.5)), P99Ms: ms(l.Quantile(0.99)), MaxMs: ms(l.Quantile(1))}
		}
		stats, err := bench.StatsLatency(st, srvs, now)
		if err != nil {
			return fmt.Errorf("bench fill: %w", err)
		}
		res.StatsP50Ms, res.StatsP99Ms = ms(stats.Quantile(0.5)), ms(stats.Quantile(0.99))
	}
	if *purgeOlder > 0 {
		// As if the servers' retention ran out for what is older than
		// -purge-older days: the purge runs "later" by the difference.
		later := now.Add(time.Duration(srvs[0].Retention()-*purgeOlder) * 24 * time.Hour)
		pr, err := bench.MeasurePurge(ctx, st, later, srvs[0])
		if err != nil {
			return fmt.Errorf("bench fill: purge: %w", err)
		}
		res.Purged, res.PurgeSeconds = pr.Purged, pr.Elapsed.Seconds()
		if res.PurgeSeconds > 0 {
			res.PurgePerSecond = float64(pr.Purged) / res.PurgeSeconds
		}
		res.ProbeP50Ms, res.ProbeP99Ms, res.ProbeMaxMs = ms(pr.Probe.Quantile(0.5)), ms(pr.Probe.Quantile(0.99)), ms(pr.Probe.Quantile(1))
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "filled %d messages over %d servers in %.1f s, %.0f/s\n", res.Messages, res.Servers, res.FillSeconds, res.FillPerSecond)
	if res.StoreBytes > 0 {
		fmt.Fprintf(stdout, "store file %d bytes\n", res.StoreBytes)
	}
	if token != "" {
		fmt.Fprintf(stdout, "token of fill-1 (Sandbox): %s\n", token)
	}
	if *searches > 0 {
		fmt.Fprintf(stdout, "search: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d searches)\n", res.SearchP50Ms, res.SearchP99Ms, res.SearchMaxMs, *searches)
		for _, q := range bench.SearchQueries {
			l := res.SearchByQuery[q.Name]
			fmt.Fprintf(stdout, "  %-10s p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", q.Name, l.P50Ms, l.P99Ms, l.MaxMs)
		}
		fmt.Fprintf(stdout, "stats of each server: p50 %.1f ms, p99 %.1f ms\n", res.StatsP50Ms, res.StatsP99Ms)
	}
	if *purgeOlder > 0 {
		fmt.Fprintf(stdout, "purge: %d messages in %.1f s, %.0f/s; enqueues meanwhile p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			res.Purged, res.PurgeSeconds, res.PurgePerSecond, res.ProbeP50Ms, res.ProbeP99Ms, res.ProbeMaxMs)
	}
	return nil
}

// fillServers returns n Sandbox servers fill-1 … fill-n of the account,
// creating those missing, and a token of fill-1 when it created it.
func fillServers(st store.Backend, accountID int64, n int, now time.Time) ([]store.Server, string, error) {
	existing, err := st.ListServers(accountID)
	if err != nil {
		return nil, "", err
	}
	byName := map[string]store.Server{}
	for _, srv := range existing {
		if strings.HasPrefix(srv.Name, "fill-") {
			byName[srv.Name] = srv
		}
	}
	var token string
	srvs := make([]store.Server, 0, n)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("fill-%d", i)
		srv, ok := byName[name]
		if !ok {
			tok := auth.NewToken()
			srv, err = st.CreateServer(store.Server{AccountID: accountID, Name: name, DeliveryType: store.DeliverySandbox, SmtpApiActivated: true},
				auth.StoreToken(tok), now)
			if err != nil {
				return nil, "", fmt.Errorf("creating server %s: %w", name, err)
			}
			if i == 1 {
				token = tok
			}
		}
		srvs = append(srvs, srv)
	}
	return srvs, token, nil
}
