package main

// Resource bounds of the real binary: 1,000 idle SMTP sessions, and 50
// concurrent 10 MiB messages under the in-flight cap, with peak RSS
// (VmHWM) read from /proc. The binary measured is built without -race,
// whose shadow memory would multiply the figures.

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// procStatus reads a "kB" field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

const mib = 1 << 20

// Memory budgets, as docs/operations.md, "Resource bounds", gives them.
const (
	budgetIdle     = 150 * mib  // 1,000 idle sessions
	budgetInflight = 1280 * mib // 50 concurrent 10 MiB messages under the 256 MiB cap: about 4 copies of each in-flight byte, and GC headroom
)

// 1,000 idle sessions (max-sessions), and the 1,001st refused.
func TestResourceBoundsIdle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	t.Parallel()
	addr, pid, _ := startPlain(t)
	base := procStatus(t, pid, "VmRSS")

	// 1,000 idle sessions, each greeted and past EHLO, all held open.
	const idle = 1000
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(waitTimeout))
		tc := textproto.NewConn(c)
		if _, _, err := tc.ReadResponse(220); err != nil {
			t.Fatalf("session %d: %v", len(conns), err)
		}
		if err := tc.PrintfLine("EHLO idle.client"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tc.ReadResponse(250); err != nil {
			t.Fatalf("session %d: EHLO: %v", len(conns), err)
		}
	}
	// The next one is over max-sessions.
	if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		c.SetDeadline(time.Now().Add(waitTimeout))
		line, _ := textproto.NewConn(c).ReadLine()
		c.Close()
		if !strings.HasPrefix(line, "421 4.3.2") {
			t.Errorf("session 1001: %q, want 421 4.3.2", line)
		}
	}
	idleRSS, idleHWM := procStatus(t, pid, "VmRSS"), procStatus(t, pid, "VmHWM")
	t.Logf("%d idle sessions: RSS %d MiB (%d MiB before them), peak %d MiB", idle, idleRSS/mib, base/mib, idleHWM/mib)
	if idleHWM > budgetIdle {
		t.Errorf("peak RSS with %d idle sessions %d MiB > budget %d MiB", idle, idleHWM/mib, budgetIdle/mib)
	}
}

// startPlain runs serve in a new directory and returns its SMTP address,
// its pid and the installation. The binary is built without -race, as
// users run it, so its memory is what they see.
func startPlain(t *testing.T) (addr string, pid int, inst installation) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	cmd := exec.CommandContext(ctx, postern.Path, "serve", "-smtp-addr", "127.0.0.1:0")
	cmd.Dir = dir
	// Every session comes from 127.0.0.1 and waits unauthenticated.
	cmd.Env = append(testEnv(), "POSTERN_MAX_SESSIONS_PER_IP=2000", "POSTERN_PREAUTH_TIMEOUT=10m")
	p := launch(t, cmd, cancel)
	return p.listening(t, "smtp"), cmd.Process.Pid, p.summary(t)
}

// The long form: 50 concurrent messages of 10 MiB under the default
// 256 MiB in-flight cap.
func TestLongResourceBoundsInflight(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if !long() {
		t.Skip("long form: make test-long, or -long, or POSTERN_TEST_LONG=1")
	}
	addr, pid, inst := startPlain(t)
	base := procStatus(t, pid, "VmRSS")

	// 50 concurrent messages of 10 MiB (just under max-message-size),
	// without SIZE: each reserves 10 MiB of the 256 MiB cap.
	const senders, size = 50, 10<<20 - 4096
	line := strings.Repeat("0123456789", 99) + "\r\n" // 992 bytes
	bodyText := strings.Repeat(line, size/len(line))
	var wg sync.WaitGroup
	replies := make(chan string, senders)
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + inst.ServerToken + "\x00" + inst.ServerToken))
	start := time.Now()
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				replies <- err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			tc := textproto.NewConn(c)
			step := func(code int, cmd string) error {
				if cmd != "" {
					if err := tc.PrintfLine("%s", cmd); err != nil {
						return err
					}
				}
				_, _, err := tc.ReadResponse(code)
				return err
			}
			for _, s := range []struct {
				code int
				cmd  string
			}{{220, ""}, {250, "EHLO big.client"}, {235, "AUTH PLAIN " + ir}, {250, "MAIL FROM:<app@example.com>"}, {250, fmt.Sprintf("RCPT TO:<big%d@example.net>", i)}, {354, "DATA"}} {
				if err := step(s.code, s.cmd); err != nil {
					replies <- fmt.Sprintf("%s: %v", s.cmd, err)
					return
				}
			}
			w := tc.DotWriter()
			io.WriteString(w, "From: app@example.com\r\nSubject: big\r\n\r\n")
			io.WriteString(w, bodyText)
			if err := w.Close(); err != nil {
				replies <- err.Error()
				return
			}
			code, msg, err := tc.ReadResponse(0)
			if err != nil {
				replies <- err.Error()
				return
			}
			replies <- fmt.Sprintf("%d %s", code, msg)
		}()
	}
	wg.Wait()
	close(replies)
	results := map[string]int{}
	for r := range replies {
		if strings.HasPrefix(r, "250 ") {
			r = "250"
		}
		results[r]++
	}
	took := time.Since(start)
	hwm := procStatus(t, pid, "VmHWM")
	t.Logf("%d concurrent 10 MiB messages (%d bytes of body) in %s: %v; peak RSS %d MiB (budget %d MiB; %d MiB before; now anon %d MiB, file %d MiB)",
		senders, len(bodyText), took.Round(time.Millisecond), results, hwm/mib, budgetInflight/mib, base/mib,
		procStatus(t, pid, "RssAnon")/mib, procStatus(t, pid, "RssFile")/mib)
	for r := range results {
		if r != "250" && !strings.HasPrefix(r, "451 4.3.2") {
			t.Errorf("reply %q", r)
		}
	}
	if hwm > budgetInflight {
		t.Errorf("peak RSS %d MiB > budget %d MiB", hwm/mib, budgetInflight/mib)
	}
}
