package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/internal/app"
	"github.com/postern/postern/store"
)

const storeUsage = `Usage: postern store copy -from LOCATION -to LOCATION

Copies a whole store, while no postern serve uses either: accounts,
servers, token hashes, domains with their DKIM keys, messages with their
raw MIME and events, bounces, suppressions, daily stats and the queue.
A LOCATION is a data directory (the embedded bbolt store) or a PostgreSQL
DSN (postgres://user:password@host/db). The target must be empty. The
copy is counted, and counted again in the target afterwards.

  postern store copy -from /var/lib/postern -to postgres://postern@db/postern
  postern store copy -from postgres://postern@db/postern -to /var/lib/postern-new
`

func storeCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "copy" {
		fmt.Fprint(stderr, storeUsage)
		return errors.New("store: a command is needed: copy")
	}
	fs := flag.NewFlagSet("store copy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, storeUsage) }
	from := fs.String("from", "", "the store to copy: a data directory or a postgres:// DSN")
	to := fs.String("to", "", "the empty store to copy into: a data directory or a postgres:// DSN")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *from == "" || *to == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("store copy: -from and -to are needed")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	src, err := app.OpenLocation(*from, true)
	if err != nil {
		return fmt.Errorf("store copy: -from: %w", err)
	}
	defer src.Close()
	dst, err := app.OpenLocation(*to, false)
	if err != nil {
		return fmt.Errorf("store copy: -to: %w", err)
	}
	defer dst.Close()
	exp, ok1 := src.(store.Exporter)
	imp, ok2 := dst.(store.Importer)
	if !ok1 || !ok2 {
		return errors.New("store copy: these backends cannot copy")
	}
	total, err := messageCount(src)
	if err != nil {
		return fmt.Errorf("store copy: counting the messages: %w", err)
	}
	bar := newProgress(stderr, total, time.Now)
	counts, err := store.Copy(ctx, exp, imp, func(r store.Record) {
		if r.Message != nil {
			bar.add()
		}
	})
	bar.done()
	if errors.Is(err, store.ErrNotEmpty) {
		return fmt.Errorf("store copy: %s is not empty: copy into an empty store", redact(*to))
	}
	if err != nil {
		return fmt.Errorf("store copy: %w", err)
	}
	fmt.Fprintf(stdout, "Copied %s to %s, and counted again there:\n", redact(*from), redact(*to))
	for _, kind := range store.Kinds[1:] {
		fmt.Fprintf(stdout, "  %-15s %d\n", kind, counts[kind])
	}
	return nil
}

// messageCount is how many messages st holds, for the progress bar.
func messageCount(st store.Backend) (int, error) {
	accounts, err := st.Accounts()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range accounts {
		servers, err := st.ListServers(a.ID)
		if err != nil {
			return 0, err
		}
		for _, srv := range servers {
			res, err := st.SearchMessages(srv.ID, store.MessageQuery{})
			if err != nil {
				return 0, err
			}
			n += res.Total
		}
	}
	return n, nil
}

// redact hides a DSN's password in what is printed.
func redact(loc string) string {
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok {
		return loc
	}
	creds, host, ok := strings.Cut(rest, "@")
	if !ok {
		return loc
	}
	if user, _, hasPassword := strings.Cut(creds, ":"); hasPassword {
		creds = user + ":…"
	}
	return scheme + "://" + creds + "@" + host
}

// progress draws, on one line of a terminal (or a line per tenth when it
// is not one), the messages copied, their rate and the time left.
type progress struct {
	w       io.Writer
	total   int
	n       int
	start   time.Time
	now     func() time.Time
	last    time.Time
	tty     bool
	shownAt int
}

func newProgress(w io.Writer, total int, now func() time.Time) *progress {
	p := &progress{w: w, total: total, now: now, start: now()}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) add() {
	p.n++
	t := p.now()
	if p.tty && t.Sub(p.last) < 200*time.Millisecond && p.n != p.total {
		return
	}
	if !p.tty && (p.total == 0 || p.n*10/p.total == p.shownAt) {
		return
	}
	p.last, p.shownAt = t, p.n*10/max(p.total, 1)
	p.draw(t)
}

func (p *progress) draw(t time.Time) {
	elapsed := t.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.n) / elapsed
	}
	left := "?"
	if rate > 0 && p.total >= p.n {
		left = (time.Duration(float64(p.total-p.n)/rate) * time.Second).Round(time.Second).String()
	}
	const width = 30
	filled := width
	if p.total > 0 {
		filled = width * p.n / p.total
	}
	line := fmt.Sprintf("[%s%s] %d/%d messages, %.0f/s, %s left", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), p.n, p.total, rate, left)
	if p.tty {
		fmt.Fprint(p.w, "\r"+line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) done() {
	if p.tty {
		p.draw(p.now())
		fmt.Fprintln(p.w)
	}
}
