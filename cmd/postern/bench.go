package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/postern/postern/internal/bench"
)

// sinkCmd is `postern sink`: an SMTP server that accepts and discards
// everything, counting it, until SIGTERM or SIGINT.
func sinkCmd(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runSink(ctx, args, stdout, stderr)
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:2526", "SMTP address to listen on")
	reply := fs.String("reply", "", `reply to RCPT for a fraction of recipients, e.g. "550 5.1.1" (default: accept all)`)
	fraction := fs.Float64("reply-fraction", 1, "fraction of recipients, 0 to 1, answered with -reply")
	delay := fs.Duration("delay", 0, "added before the reply to the end of DATA")
	statsAddr := fs.String("stats-addr", "", "HTTP address serving GET /stats as JSON (default: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("sink: unexpected argument %q", fs.Arg(0))
	}
	opts := bench.SinkOptions{Delay: *delay, Fraction: *fraction}
	if *reply != "" {
		r, err := bench.ParseReply(*reply)
		if err != nil {
			return fmt.Errorf("sink: -reply: %w", err)
		}
		opts.Reply = r
	}
	if *fraction < 0 || *fraction > 1 {
		return errors.New("sink: -reply-fraction must be from 0 to 1")
	}
	sink := bench.NewSink(opts)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	var statsServer *http.Server
	if *statsAddr != "" {
		sln, err := net.Listen("tcp", *statsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("sink: -stats-addr: %w", err)
		}
		statsServer = &http.Server{Handler: sink.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go statsServer.Serve(sln)
		defer statsServer.Close()
		fmt.Fprintf(stdout, "sink stats on %s\n", sln.Addr())
	}
	fmt.Fprintf(stdout, "sink listening on %s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- sink.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("sink: %w", err)
	}
	sink.Close()
	<-served
	fmt.Fprintln(stdout, sink.Stats().Summary())
	return nil
}

// benchCmd is `postern bench`: SMTP load against any address.
func benchCmd(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return runBench(ctx, args, stdout, stderr)
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "fill" {
		return runFill(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:2525", "SMTP address to send to (host:port)")
	fs.IntVar(&o.Sessions, "sessions", 32, "concurrent SMTP sessions")
	messages := fs.Int64("messages", 0, "messages to send (default 10000 unless -duration)")
	fs.DurationVar(&o.Duration, "duration", 0, "send for this long instead of a number of messages")
	size := fs.Int("size", 2048, "message size in bytes")
	sizes := fs.String("sizes", "", "a size mix, used in turn, e.g. 2048,51200 (instead of -size)")
	fs.IntVar(&o.PerConn, "per-conn", 0, "messages per connection (0 = all on one connection)")
	fs.StringVar(&o.Token, "token", "", "AUTH PLAIN with this token as username and password (default: no AUTH)")
	fs.BoolVar(&o.StartTLS, "starttls", false, "use STARTTLS (required)")
	insecure := fs.Bool("insecure", false, "skip certificate verification (default true for a loopback address)")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: offer this many messages/s in total on a fixed timeline; latency from the scheduled send (a session connects before its next message is due)")
	fs.StringVar(&o.From, "from", "app@example.com", "envelope and header From")
	fs.StringVar(&o.To, "to", "rcpt@example.net", "envelope and header To")
	fs.StringVar(&o.SinkStats, "sink-stats", "", "a postern sink's stats URL (http://HOST:PORT/stats): wait for the accepted messages to arrive and report end to end")
	fs.DurationVar(&o.Wait, "wait", 60*time.Second, "with -sink-stats, how long at most to wait for the arrivals")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	quiet := fs.Bool("quiet", false, "no progress bar")
	progress := fs.Bool("progress", false, "show the progress bar even if stderr is not a terminal")
	fs.StringVar(&o.Client, "client", "textproto", "SMTP client: textproto (PIPELINING when offered) or gosmtp (go-smtp's client), to compare")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["messages"] && set["duration"] {
		return errors.New("bench: -messages and -duration exclude each other")
	}
	if set["size"] && set["sizes"] {
		return errors.New("bench: -size and -sizes exclude each other")
	}
	o.Messages = *messages
	if !set["messages"] && o.Duration == 0 {
		o.Messages = 10000
	}
	o.Sizes = []int{*size}
	if *sizes != "" {
		o.Sizes = nil
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				return fmt.Errorf("bench: -sizes: %q is not a size in bytes", s)
			}
			o.Sizes = append(o.Sizes, n)
		}
	}
	o.Insecure = *insecure
	if !set["insecure"] {
		o.Insecure = isLoopback(o.Addr)
	}
	if !*quiet && (*progress || isTerminal(os.Stderr)) {
		o.Progress = stderr
	}
	res, err := bench.Run(ctx, o)
	if err != nil && res == nil {
		return fmt.Errorf("bench: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(res); jerr != nil {
			return jerr
		}
	} else {
		res.WriteTable(stdout)
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
