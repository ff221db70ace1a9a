package main

import (
	"context"
	"fmt"
	"github.com/postern/postern/relay"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/internal/testutil/stack"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/postgres"
)

var nodeSeqRE = regexp.MustCompile(`(?m)^X-Node-Seq: (\S+)\r$`)

// Two postern serve processes share one PostgreSQL store, each with its
// own SMTP port: 2,000 messages are split across both; node A is killed
// with SIGKILL while the relays deliver, and started again; every message
// that got a 250 reaches the exchanger, and a message arrives twice only
// if it was in flight at the kill.
func TestTwoNodesShareOnePostgresStore(t *testing.T) {
	t.Parallel()
	const total = 2000
	dsn := pgtest.New(t)
	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	token := auth.NewToken()
	live, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "nodes", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Close()

	dns := dnstest.New(t)
	dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	dns.SetA("mx.dest.example", netip.MustParseAddr("127.0.0.1"))
	// A slow exchanger keeps deliveries in flight when the node dies.
	peer := smtptest.New(t, smtptest.Options{Data: func([]byte) error { time.Sleep(40 * time.Millisecond); return nil }})
	env := func(node string) []string {
		return []string{"POSTERN_STORE=" + dsn, "POSTERN_NODE_NAME=" + node,
			"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
			"POSTERN_SENDER_POLICY=any", "POSTERN_RETRY_BASE=100ms", "POSTERN_RETRY_MAX_INTERVAL=1s"}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startPostern(t, dirA, env("a"), "serve", "-smtp-addr", "127.0.0.1:0")
	b := startPostern(t, dirB, env("b"), "serve", "-smtp-addr", "127.0.0.1:0")
	addrs := []string{a.listening(t, "smtp"), b.listening(t, "smtp")}

	// Half the messages through each node, four connections each.
	var mu sync.Mutex
	accepted := map[string]string{} // sequence → MessageID
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client, err := stack.DialAuth(addrs[c%2], token)
			if err != nil {
				t.Error(err)
				return
			}
			defer client.Close()
			for i := c; i < total; i += 8 {
				seq := strconv.Itoa(i)
				id, err := stack.Submit(client, "app@example.com", []string{"rcpt-" + seq + "@dest.example"},
					fmt.Sprintf("From: app@example.com\nTo: rcpt-%s@dest.example\nSubject: node %d\nX-Node-Seq: %s\n\nHello.\n", seq, c%2, seq))
				if err != nil {
					t.Errorf("message %s: %v", seq, err)
					return
				}
				mu.Lock()
				accepted[seq] = id
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Node A dies while the relays deliver, and comes back.
	atKill := peer.Received()
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	if atKill >= total {
		t.Fatalf("every message was delivered before the kill: the test tested nothing")
	}
	a = startPostern(t, dirA, env("a"), "serve", "-smtp-addr", "127.0.0.1:0")
	a.listening(t, "smtp")

	got := map[string]int{}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got = map[string]int{}
		for _, m := range peer.Messages() {
			if sm := nodeSeqRE.FindSubmatch(m.Data); sm != nil {
				got[string(sm[1])]++
			}
		}
		missing := 0
		for seq := range accepted {
			if got[seq] == 0 {
				missing++
			}
		}
		// A message node A delivered just before the kill has arrived,
		// yet waits in the queue under A's lease until A, restarted,
		// takes it back and delivers it again: wait for the queue too.
		queued := -1
		if missing == 0 {
			q, err := queueOf(ctx, dsn)
			if err == nil && len(q) == 0 {
				break
			}
			queued = len(q)
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes %d of %d accepted messages have not arrived (servers with a queue: %d)", missing, len(accepted), queued)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.stop(t)
	b.stop(t)

	duplicates := 0
	for seq, n := range got {
		if accepted[seq] == "" {
			t.Errorf("message %s arrived but was never accepted", seq)
		}
		duplicates += n - 1
	}
	// Only what node A had in flight can come twice: at most its
	// deliveries of the one server to the one destination.
	if inFlight := min(relay.DefaultPerServer, relay.DefaultPerDomain); duplicates > inFlight {
		t.Errorf("%d duplicates, more than node A could have had in flight", duplicates)
	}
	st, err = postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if q, err := st.QueueStats(); err != nil || len(q) != 0 {
		t.Errorf("the queue at the end: %+v, %v", q, err)
	}
	sent := 0
	for _, id := range accepted {
		if m, err := st.Message(live.ID, id); err == nil && m.Status == store.StatusSent {
			sent++
		}
	}
	if sent != len(accepted) {
		t.Errorf("%d of %d messages are Sent in the store", sent, len(accepted))
	}
	t.Logf("two nodes: %d accepted, %d delivered when node A was killed, %d duplicates", len(accepted), atKill, duplicates)
}

// queueOf reads the queue of the store at dsn, as a node sees it.
func queueOf(ctx context.Context, dsn string) ([]store.QueueStat, error) {
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.QueueStats()
}
