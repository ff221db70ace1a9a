package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postern/postern/store"
)

// FillStore is what Fill and the scale measurements use of a store.
type FillStore interface {
	store.Servers
	store.Messages
	store.Stats
	store.Retention
}

// FillOptions say what Fill puts in a store.
type FillOptions struct {
	Messages int            // how many messages in all
	Servers  []store.Server // spread over these, in turn
	Days     int            // received over the last Days days before Now, at random
	Now      time.Time
	Workers  int    // concurrent enqueues, so that the store groups its commits (default 64)
	Seed     uint64 // of the times and contents
}

// Fill enqueues o.Messages messages through the store's normal path
// (store.Accept, then Enqueue), from o.Workers goroutines at once as
// intake's sessions would, calling done after each. The messages are
// small raw MIME of the kinds an application sends (plain text,
// text and HTML, now and then a small attachment), each to one or two
// recipients, with a tag and metadata, received at a random time of the
// last o.Days days. Sandbox servers' messages are filed as delivered,
// with no queue entry.
func Fill(ctx context.Context, st FillStore, o FillOptions, done func()) error {
	if len(o.Servers) == 0 {
		return fmt.Errorf("fill: no servers")
	}
	workers := o.Workers
	if workers <= 0 {
		workers = 64
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)))
			for {
				i := int(next.Add(1)) - 1
				if i >= o.Messages || ctx.Err() != nil {
					return
				}
				srv := o.Servers[i%len(o.Servers)]
				at := o.Now.Add(-time.Duration(rng.Int64N(int64(o.Days) * int64(24*time.Hour))))
				msg, raw := fillMessage(rng, i, srv.ID, at)
				if err := st.Enqueue(store.Accept(srv, msg, raw)); err != nil {
					errs <- fmt.Errorf("fill: message %d: %w", i, err)
					return
				}
				done()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

var (
	fillTags     = []string{"welcome", "password-reset", "invoice", "receipt", "digest", "alert", "invite", "shipping"}
	fillSubjects = []string{"Welcome to Acme, %s", "Reset your password, %s", "Your invoice %d", "Receipt for order %d",
		"Your weekly digest", "Alert: unusual sign-in for %s", "%s invited you to a project", "Your order %d has shipped"}
	fillNames = []string{"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"}
)

// fillMessage is message i of a fill: its record as intake would make
// it, and its raw MIME (0.8 to 3 KB).
func fillMessage(rng *rand.Rand, i int, serverID int64, at time.Time) (store.Message, []byte) {
	kind := i % len(fillTags)
	name := fillNames[rng.IntN(len(fillNames))]
	subject := fillSubjects[kind]
	if strings.Contains(subject, "%d") {
		subject = fmt.Sprintf(subject, 10000+i)
	} else if strings.Contains(subject, "%s") {
		subject = fmt.Sprintf(subject, name)
	}
	rcpts := []string{fmt.Sprintf("%s.%d@customer-%d.example", strings.ToLower(name), rng.IntN(5000), rng.IntN(200))}
	if rng.IntN(10) == 0 {
		rcpts = append(rcpts, fmt.Sprintf("cc.%d@customer-%d.example", rng.IntN(5000), rng.IntN(200)))
	}
	from := fmt.Sprintf("notifications@app-%d.example", serverID)
	id := store.MessageIDAt(at)
	var b strings.Builder
	fmt.Fprintf(&b, "Date: %s\r\nFrom: Acme <%s>\r\nTo: %s <%s>\r\n", at.Format(time.RFC1123Z), from, name, rcpts[0])
	if len(rcpts) > 1 {
		fmt.Fprintf(&b, "Cc: <%s>\r\n", rcpts[1])
	}
	fmt.Fprintf(&b, "Subject: %s\r\nMessage-ID: <%s@app-%d.example>\r\nMIME-Version: 1.0\r\n", subject, id, serverID)
	text := fmt.Sprintf("Hello %s,\r\n\r\n%s.\r\n\r\n%s\r\nThe Acme team\r\n", name, subject, strings.Repeat("Thank you for using Acme. If you have questions, reply to this message.\r\n", 2+rng.IntN(8)))
	switch {
	case i%20 == 7: // a small attachment
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n--b1\r\n"+
			"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--b1--\r\n",
			text, 10000+i, strings.Repeat("JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZUR\r\n", 6))
	case i%3 == 0: // text and HTML
		fmt.Fprintf(&b, "Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n--b2\r\n"+
			"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>%s</p></body></html>\r\n--b2--\r\n", text, strings.ReplaceAll(text, "\r\n", "<br>\r\n"))
	default:
		fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s", text)
	}
	raw := []byte(b.String())
	to := make([]store.Address, len(rcpts))
	for j, r := range rcpts {
		to[j] = store.Address{Email: r}
	}
	to[0].Name = name
	return store.Message{
		MessageID:     id,
		ServerID:      serverID,
		EnvelopeFrom:  from,
		From:          "Acme <" + from + ">",
		To:            to[:1],
		Cc:            to[1:],
		Recipients:    rcpts,
		Subject:       subject,
		Tag:           fillTags[kind],
		Metadata:      map[string]string{"user-id": fmt.Sprint(rng.IntN(100000))},
		MessageStream: "outbound",
		ReceivedAt:    at.UTC(),
		Size:          len(raw),
		Status:        store.StatusQueued,
	}, raw
}

// Latencies are a sorted sample of durations.
type Latencies []time.Duration

// Quantile is the q-quantile (0 to 1) of the sample, 0 when empty.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(q*float64(len(l))))]
}

// SearchQueries are the searches SearchLatency rotates over, by name: a
// page of 50, newest first, as the API's outbound search asks, with no
// filter, a tag, a recipient, part of the subject or a status.
var SearchQueries = []struct {
	Name  string
	Query store.MessageQuery
}{
	{"no filter", store.MessageQuery{Count: 50}},
	{"tag", store.MessageQuery{Count: 50, Tag: "invoice"}},
	{"recipient", store.MessageQuery{Count: 50, Recipient: "alice.123@customer-7.example"}},
	{"subject", store.MessageQuery{Count: 50, Subject: "order 12"}},
	{"status", store.MessageQuery{Count: 50, Statuses: []string{store.StatusBounced}}},
}

// SearchLatency runs n searches, SearchQueries in turn, each on one of
// servers drawn at random, and times each: all of them, and by query.
func SearchLatency(st FillStore, servers []store.Server, n int, seed uint64) (all Latencies, byQuery map[string]Latencies, err error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	all = make(Latencies, 0, n)
	byQuery = make(map[string]Latencies, len(SearchQueries))
	for i := range n {
		q := SearchQueries[i%len(SearchQueries)]
		srv := servers[rng.IntN(len(servers))]
		start := time.Now()
		if _, err := st.SearchMessages(srv.ID, q.Query); err != nil {
			return nil, nil, fmt.Errorf("search %s on server %d: %w", q.Name, srv.ID, err)
		}
		took := time.Since(start)
		all = append(all, took)
		byQuery[q.Name] = append(byQuery[q.Name], took)
	}
	slices.Sort(all)
	for _, l := range byQuery {
		slices.Sort(l)
	}
	return all, byQuery, nil
}

// StatsLatency reads each server's last 30 days of stats (the
// console's and the API's outbound overview), timing each.
func StatsLatency(st FillStore, servers []store.Server, now time.Time) (Latencies, error) {
	took := make(Latencies, 0, len(servers))
	q := store.StatsQuery{From: now.AddDate(0, 0, -30), To: now}
	for _, srv := range servers {
		start := time.Now()
		if _, err := st.Stats(srv.ID, q); err != nil {
			return nil, fmt.Errorf("stats of server %d: %w", srv.ID, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took, nil
}

// PurgeResult is what MeasurePurge saw.
type PurgeResult struct {
	Purged  int
	Elapsed time.Duration
	// Probe are the latencies of enqueues made one after the other
	// while the purge ran: each waits for whatever transaction holds the
	// writer, then its own commit, so the longest bounds how long the
	// purge held the writer at a time from above.
	Probe Latencies
}

// MeasurePurge runs the retention purge as of now (store.DefaultPurgeBatch
// messages per transaction) while enqueueing a message of probe every
// 5 ms, one at a time, and times each enqueue.
func MeasurePurge(ctx context.Context, st FillStore, now time.Time, probe store.Server) (PurgeResult, error) {
	var res PurgeResult
	stop := make(chan struct{})
	probed := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 7))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				probed <- nil
				return
			case <-tick.C:
			}
			msg, raw := fillMessage(rng, i, probe.ID, time.Now())
			start := time.Now()
			if err := st.Enqueue(store.Accept(probe, msg, raw)); err != nil {
				probed <- fmt.Errorf("probe enqueue: %w", err)
				return
			}
			res.Probe = append(res.Probe, time.Since(start))
		}
	}()
	start := time.Now()
	n, err := st.PurgeExpired(ctx, now, store.DefaultPurgeBatch)
	res.Purged, res.Elapsed = n, time.Since(start)
	close(stop)
	if perr := <-probed; err == nil {
		err = perr
	}
	slices.Sort(res.Probe)
	return res, err
}
