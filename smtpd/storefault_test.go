package smtpd

// Store faults under load: while commits fail, every client gets 451 4.3.0
// (an I/O error) or 452 4.3.1 (disk full), nothing that got a 250 is lost,
// nothing that got a 4xx is stored, and sending resumes when the fault
// ends. Then the same on a real filesystem that fills up.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/store/bolt"
)

const (
	replyIOError = "451 4.3.0 Temporary storage failure; the message was not accepted, try again later"
	replyNoSpace = "452 4.3.1 Insufficient system storage; the message was not accepted, try again later"
)

// faultLoad runs clients that send until stop is closed and records each
// final reply to DATA by the client's own sequence number.
type faultLoad struct {
	mu       sync.Mutex
	accepted map[string]string // MessageID → subject
	refused  map[string]int    // reply → count
	other    []string
}

func (l *faultLoad) run(t *testing.T, ts *testServer, clients int, stop <-chan struct{}, size int) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := authenticated(t, ts.Addr, ts.Inst.ServerToken)
			defer c.conn.Close()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				c.conn.SetDeadline(time.Now().Add(30 * time.Second))
				c.expect("250", "MAIL FROM:<app@example.com>")
				c.expect("250", "RCPT TO:<c%d@example.net>", i)
				subject := fmt.Sprintf("%d/%d", i, j)
				got := c.sendData(fmt.Sprintf("From: app@example.com\r\nSubject: %s\r\n\r\n%s\r\n", subject, body(size)))
				l.mu.Lock()
				switch {
				case strings.HasPrefix(got, "250 2.0.0 OK: queued as "):
					l.accepted[strings.TrimPrefix(got, "250 2.0.0 OK: queued as ")] = subject
				case got == replyIOError || got == replyNoSpace:
					l.refused[got]++
				default:
					l.other = append(l.other, got)
				}
				l.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func newFaultLoad() *faultLoad {
	return &faultLoad{accepted: map[string]string{}, refused: map[string]int{}}
}

// body is size bytes of text in lines of at most 1000.
func body(size int) string {
	line := strings.Repeat("x", 998) + "\r\n"
	return strings.Repeat(line, size/1000) + strings.Repeat("y", size%1000)
}

// check asserts that the store holds exactly the accepted messages, each
// with its queue entry.
func (l *faultLoad) check(t *testing.T, st *bolt.Store, serverID int64) {
	t.Helper()
	if len(l.other) > 0 {
		t.Errorf("unexpected replies: %q", l.other)
	}
	msgs, err := st.Messages(serverID, 100000)
	if err != nil {
		t.Fatal(err)
	}
	q, err := st.Queue(100000)
	if err != nil {
		t.Fatal(err)
	}
	queued := map[string]bool{}
	for _, e := range q {
		queued[e.MessageID] = true
	}
	stored := map[string]bool{}
	for _, m := range msgs {
		stored[m.MessageID] = true
		if _, ok := l.accepted[m.MessageID]; !ok {
			t.Errorf("message %s (%q) is stored but its client got no 250", m.MessageID, m.Subject)
		}
	}
	lost := 0
	for id, subject := range l.accepted {
		if !stored[id] || !queued[id] {
			lost++
			t.Errorf("message %s (%s) got a 250: stored %v, queued %v", id, subject, stored[id], queued[id])
		}
	}
	t.Logf("accepted %d, stored %d, queue entries %d, refused %v, lost %d", len(l.accepted), len(msgs), len(q), l.refused, lost)
}

// Sixteen clients send while commits fail, first with an I/O error, then
// with ENOSPC, then recover.
func TestStorageFailureUnderLoad(t *testing.T) {
	var fault atomic.Pointer[error]
	ts := newTestServer(t, testOptions{live: true, storeOptions: bolt.Options{BeforeCommit: func() error {
		if e := fault.Load(); e != nil {
			return *e
		}
		return nil
	}}})
	setFault := func(err error) {
		if err == nil {
			fault.Store(nil)
		} else {
			fault.Store(&err)
		}
	}
	load := newFaultLoad()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		load.run(t, ts, 16, stop, 2000)
		close(done)
	}()
	count := func() (accepted int, refused map[string]int) {
		load.mu.Lock()
		defer load.mu.Unlock()
		refused = map[string]int{}
		for k, v := range load.refused {
			refused[k] = v
		}
		return len(load.accepted), refused
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				a, r := count()
				t.Fatalf("%s: not within 30s (accepted %d, refused %v)", what, a, r)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("accepting", func() bool { a, _ := count(); return a >= 50 })
	setFault(&os.PathError{Op: "write", Path: "postern.db", Err: syscall.EIO})
	waitFor("451 4.3.0 while writes fail", func() bool { _, r := count(); return r[replyIOError] >= 50 })
	setFault(fmt.Errorf("store: commit: %w", &os.PathError{Op: "write", Path: "postern.db", Err: syscall.ENOSPC}))
	waitFor("452 4.3.1 while the disk is full", func() bool { _, r := count(); return r[replyNoSpace] >= 50 })
	a0, _ := count()
	setFault(nil)
	waitFor("recovery", func() bool { a, _ := count(); return a >= a0+100 })
	close(stop)
	<-done
	load.check(t, ts.Store, ts.Inst.ServerID)
	if err := ts.Store.Check(); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new temporary directory and
// unmounts it when the test ends. Where mounting is not permitted, the
// test skips, or fails under CI=true (CI runs as root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("tmpfs is Linux's")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testutil.Unavailable(t, "cannot mount a tmpfs (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// The store on a 4 MiB tmpfs: fill it until commits fail, see 452 4.3.1
// for every message that does not fit, free the space, see 250 again. No
// 250 is given for a message that is not in the file: the store, closed
// and reopened, holds exactly the accepted messages and passes its check.
func TestStorageFullFilesystem(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	// Most of the filesystem goes to a filler file, so the store hits
	// the end after a few messages, at mmap growth as well as at commit.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, testOptions{live: true, dir: dir, noTLS: true})

	send := func(load *faultLoad, until func(*faultLoad) bool) {
		t.Helper()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			load.run(t, ts, 4, stop, 30000)
			close(done)
		}()
		deadline := time.Now().Add(60 * time.Second)
		for {
			load.mu.Lock()
			ok := until(load)
			load.mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				close(stop)
				<-done
				t.Fatalf("not within 60s: accepted %d, refused %v, other %q", len(load.accepted), load.refused, load.other)
			}
			time.Sleep(10 * time.Millisecond)
		}
		close(stop)
		<-done
	}
	// Fill: until 20 refusals.
	full, recovered := newFaultLoad(), newFaultLoad()
	send(full, func(l *faultLoad) bool { return l.refused[replyNoSpace]+l.refused[replyIOError] >= 20 })
	t.Logf("full: accepted %d, refused %v", len(full.accepted), full.refused)
	if full.refused[replyNoSpace] == 0 {
		t.Errorf("no 452 4.3.1 when the disk filled (refused %v)", full.refused)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err == nil {
		t.Logf("free on the tmpfs when full: %d bytes", st.Bavail*uint64(st.Bsize))
	}
	// Free the space: sending resumes.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	send(recovered, func(l *faultLoad) bool { return len(l.accepted) >= 10 })
	t.Logf("after freeing space: accepted %d, refused %v", len(recovered.accepted), recovered.refused)

	// Every 250 of both rounds is in the file: close the store, open it
	// again from the filesystem, check it.
	all := newFaultLoad()
	for _, l := range []*faultLoad{full, recovered} {
		for id, s := range l.accepted {
			all.accepted[id] = s
		}
		all.other = append(all.other, l.other...)
		for k, v := range l.refused {
			all.refused[k] += v
		}
	}
	if err := ts.srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := ts.Store.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := bolt.Open(filepath.Join(dir, bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if err := reopened.Check(); err != nil {
		t.Fatalf("store after the disk filled: %v", err)
	}
	all.check(t, reopened, ts.Inst.ServerID)
	if _, err := os.Stat(filler); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}
