package main

// Crash consistency: the real postern serve under concurrent SMTP load,
// killed with SIGKILL at random moments and restarted on the same data
// directory, delivering to a recording SMTP peer. Every message that got a
// 250 is delivered or bounced in the end; nothing is delivered that never
// got a 250; only messages in flight at a kill may arrive twice.

import (
	"encoding/base64"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/internal/testutil/dnstest"
	"github.com/postern/postern/internal/testutil/smtptest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

var longTests = flag.Bool("long", false, "run the long forms of the crash and resource tests (also POSTERN_TEST_LONG=1)")

// long reports whether the long forms were asked for.
func long() bool { return *longTests || os.Getenv("POSTERN_TEST_LONG") == "1" }

// Outcomes of one message as its client saw them.
const (
	outcomeRefused  = iota + 1 // a reply other than 250 to MAIL, RCPT, DATA or the final dot
	outcomeBroken              // the connection broke before the body was sent: never stored
	outcomeUnknown             // the body was being sent when the connection broke: stored or not
	outcomeAccepted            // 250 with a MessageID
)

type crashMessage struct {
	outcome   int
	messageID string // with outcomeAccepted
	bounce    bool   // its recipient's mailbox does not exist: it must bounce
}

// crashLedger is every message the clients tried, by its X-Crash-Seq.
type crashLedger struct {
	mu   sync.Mutex
	msgs map[string]*crashMessage
}

func (l *crashLedger) set(seq string, m crashMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs[seq] = &m
}

var crashSeqRE = regexp.MustCompile(`(?m)^X-Crash-Seq: (\S+)\r$`)

// crashClient sends messages over one connection until it breaks or stop
// closes. It never fails the test: a broken connection is what a kill does.
func crashClient(addr, token, worker string, next func() int, ledger *crashLedger, stop <-chan struct{}) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitTimeout))
	text := textproto.NewConn(conn)
	// replied is set when the server answered with an unexpected code,
	// as opposed to the connection breaking.
	replied := false
	cmd := func(want int, format string, args ...any) bool {
		if format != "" {
			if err := text.PrintfLine(format, args...); err != nil {
				return false
			}
		}
		code, _, err := text.ReadResponse(want)
		replied = err != nil && code != 0
		return err == nil
	}
	if !cmd(220, "") || !cmd(250, "EHLO crash.client") {
		return
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + token + "\x00" + token))
	if !cmd(235, "AUTH PLAIN %s", ir) {
		return
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := next()
		seq := fmt.Sprintf("%s-%d", worker, n)
		bounce := n%10 == 7
		rcpt := "ok-" + seq + "@dest.example"
		if bounce {
			rcpt = "gone-" + seq + "@dest.example"
		}
		ok := cmd(250, "MAIL FROM:<app@example.com>") && cmd(250, "RCPT TO:<%s>", rcpt) && cmd(354, "DATA")
		if !ok {
			if replied {
				ledger.set(seq, crashMessage{outcome: outcomeRefused})
			} else {
				ledger.set(seq, crashMessage{outcome: outcomeBroken})
			}
			return
		}
		// From here the server may store the message whatever the
		// client hears.
		ledger.set(seq, crashMessage{outcome: outcomeUnknown, bounce: bounce})
		w := text.DotWriter()
		fmt.Fprintf(w, "From: App <app@example.com>\r\nTo: %s\r\nSubject: crash %s\r\nX-Crash-Seq: %s\r\n\r\n%s\r\n",
			rcpt, seq, seq, strings.Repeat("Crash consistency test body line.\r\n", 1+n%50))
		if err := w.Close(); err != nil {
			return
		}
		code, msg, err := text.ReadResponse(250)
		switch {
		case err == nil:
			id, found := strings.CutPrefix(msg, "2.0.0 OK: queued as ")
			if !found {
				ledger.set(seq, crashMessage{outcome: outcomeRefused})
				return
			}
			ledger.set(seq, crashMessage{outcome: outcomeAccepted, messageID: id, bounce: bounce})
		case code != 0:
			ledger.set(seq, crashMessage{outcome: outcomeRefused})
		default:
			return // no reply: unknown
		}
	}
}

// checkStoreOffline opens the store while postern is down, checks its
// consistency, and closes it again.
func checkStoreOffline(t *testing.T, data string, round int) {
	t.Helper()
	st, err := bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatalf("after kill %d: open: %v", round, err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("after kill %d: store consistency: %v", round, err)
	}
}

func TestCrashConsistency(t *testing.T) {
	t.Parallel()
	kills, workers := 3, 4
	if long() {
		kills, workers = 25, 6
	}
	dir := t.TempDir()
	inst, data := initialized(t, dir)
	// A Live server, made in the store while serve is not running.
	st, err := bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	token := auth.NewToken()
	live, err := st.CreateServer(store.Server{AccountID: inst.AccountID, Name: "crash-production", DeliveryType: store.DeliveryLive, SmtpApiActivated: true},
		auth.StoreToken(token), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	dns := dnstest.New(t)
	dns.SetMX("dest.example", []dnstest.MX{{Host: "mx.dest.example", Pref: 10}})
	dns.SetA("mx.dest.example", netip.MustParseAddr("127.0.0.1"))
	peer := smtptest.New(t, smtptest.Options{Rcpt: func(to string) error {
		if strings.HasPrefix(to, "gone-") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}})
	env := []string{
		"POSTERN_DNS=" + dns.Addr(), "POSTERN_MX_PORT=" + strconv.Itoa(peer.Port()), "POSTERN_ALLOW_PRIVATE_DESTINATIONS=true",
		"POSTERN_SENDER_POLICY=any", "POSTERN_RETRY_BASE=100ms", "POSTERN_RETRY_MAX_INTERVAL=1s",
	}

	ledger := &crashLedger{msgs: map[string]*crashMessage{}}
	var counterMu sync.Mutex
	counters := map[int]int{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := 1; round <= kills; round++ {
		p := startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
		addr := p.listening(t, "smtp")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				next := func() int {
					counterMu.Lock()
					defer counterMu.Unlock()
					counters[w]++
					return counters[w]
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					crashClient(addr, token, strconv.Itoa(w), next, ledger, stop)
				}
			}()
		}
		// Kill at a random moment: while clients send and the relay
		// delivers.
		time.Sleep(time.Duration(300+rng.IntN(1700)) * time.Millisecond)
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-p.done
		close(stop)
		wg.Wait()
		checkStoreOffline(t, data, round)
	}

	// The last start: no more load; the queue drains.
	p := startPostern(t, dir, env, "serve", "-smtp-addr", "127.0.0.1:0")
	p.listening(t, "smtp")
	metricsAddr := p.listening(t, "metrics")
	ledger.mu.Lock()
	mustArrive := map[string]bool{}
	for seq, m := range ledger.msgs {
		if m.outcome == outcomeAccepted && !m.bounce {
			mustArrive[seq] = true
		}
	}
	ledger.mu.Unlock()
	delivered := func() map[string]int {
		got := map[string]int{}
		for _, m := range peer.Messages() {
			if sm := crashSeqRE.FindSubmatch(m.Data); sm != nil {
				got[string(sm[1])]++
			} else {
				t.Errorf("a delivered message has no X-Crash-Seq:\n%.500s", m.Data)
			}
		}
		return got
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := delivered()
		missing := 0
		for seq := range mustArrive {
			if got[seq] == 0 {
				missing++
			}
		}
		families, _ := scrape(t, metricsAddr)
		depth := sample(families, "postern_queue_depth", "server", strconv.FormatInt(live.ID, 10))
		if missing == 0 && depth <= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes %d accepted messages are still not delivered, queue depth %v", missing, depth)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop(t)

	st, err = bolt.Open(bolt.Path(data), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Fatalf("store consistency at the end: %v", err)
	}
	got := delivered()
	var accepted, unknown, broken, refused, deliveredN, bounced, duplicates, lost, unknownDelivered int
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for seq, m := range ledger.msgs {
		switch m.outcome {
		case outcomeRefused:
			refused++
			if got[seq] > 0 {
				t.Errorf("message %s was refused but delivered", seq)
			}
		case outcomeBroken:
			broken++
			if got[seq] > 0 {
				t.Errorf("message %s was never sent, yet delivered", seq)
			}
		case outcomeUnknown:
			unknown++
			if got[seq] > 0 {
				unknownDelivered++
			}
		case outcomeAccepted:
			accepted++
			msg, err := st.Message(live.ID, m.messageID)
			if m.bounce {
				if err != nil || msg.Status != store.StatusBounced {
					lost++
					t.Errorf("message %s (%s) got a 250 and should have bounced: %+v, %v", seq, m.messageID, msg.RecipientStatus, err)
					continue
				}
				bounced++
				if got[seq] > 0 {
					t.Errorf("message %s to a missing mailbox was delivered", seq)
				}
				continue
			}
			if got[seq] == 0 {
				lost++
				t.Errorf("message %s (%s) got a 250 and was never delivered", seq, m.messageID)
				continue
			}
			deliveredN++
			if err != nil || msg.Status != store.StatusSent {
				t.Errorf("message %s (%s) was delivered but the store says %q, %v", seq, m.messageID, msg.Status, err)
			}
		}
		if got[seq] > 1 {
			duplicates += got[seq] - 1
		}
	}
	for seq := range got {
		if ledger.msgs[seq] == nil {
			t.Errorf("message %s was delivered but never sent", seq)
		}
	}
	// The MessageID of the 250 is the one in the delivered Message-ID.
	for _, pm := range peer.Messages() {
		sm := crashSeqRE.FindSubmatch(pm.Data)
		if sm == nil {
			continue
		}
		if m := ledger.msgs[string(sm[1])]; m != nil && m.outcome == outcomeAccepted && !strings.Contains(string(pm.Data), "<"+m.messageID+"@") {
			t.Errorf("message %s arrived without its MessageID %s in Message-ID", sm[1], m.messageID)
		}
	}
	t.Logf("crash totals: kills %d, sent %d, accepted %d (delivered %d, bounced %d), refused %d, cut before DATA %d, unknown %d (%d of them delivered), duplicates %d, lost %d",
		kills, len(ledger.msgs), accepted, deliveredN, bounced, refused, broken, unknown, unknownDelivered, duplicates, lost)
	if accepted == 0 {
		t.Fatal("no message was accepted: the test tested nothing")
	}
	if lost != 0 {
		t.Fatalf("lost %d accepted messages", lost)
	}
}
