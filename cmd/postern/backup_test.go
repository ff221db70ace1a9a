package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postern/postern/api"
	"github.com/postern/postern/store/bolt"
)

// accepted is a message Postern answered 250 to, and when the answer came.
type accepted struct {
	id string
	at time.Time
}

// smtpLoad sends messages with token from several connections until
// stopped, recording every 250 it gets.
type smtpLoad struct {
	mu   sync.Mutex
	acks []accepted
	errs []error
	stop chan struct{}
	wg   sync.WaitGroup
}

func startSMTPLoad(addr, token string, conns int) *smtpLoad {
	l := &smtpLoad{stop: make(chan struct{})}
	for i := range conns {
		l.wg.Go(func() {
			if err := l.sender(addr, token, i); err != nil {
				l.mu.Lock()
				l.errs = append(l.errs, err)
				l.mu.Unlock()
			}
		})
	}
	return l
}

// sender sends messages over one connection until the load stops.
func (l *smtpLoad) sender(addr, token string, n int) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", token, token)); err != nil {
		return fmt.Errorf("AUTH: %w", err)
	}
	for seq := 0; ; seq++ {
		select {
		case <-l.stop:
			return c.Quit()
		default:
		}
		rcpt := fmt.Sprintf("load%d@example.net", n)
		if err := c.Mail("app@example.com", nil); err != nil {
			return fmt.Errorf("MAIL: %w", err)
		}
		if err := c.Rcpt(rcpt, nil); err != nil {
			return fmt.Errorf("RCPT: %w", err)
		}
		w, err := c.Data()
		if err != nil {
			return fmt.Errorf("DATA: %w", err)
		}
		subject := fmt.Sprintf("load %d/%d", n, seq)
		if _, err := io.WriteString(w, message(rcpt, subject)+strings.Repeat("Some text to make the store grow.\r\n", 50)); err != nil {
			return err
		}
		resp, err := w.CloseWithResponse()
		at := time.Now()
		if err != nil {
			return fmt.Errorf("end of DATA: %w", err)
		}
		id, ok := strings.CutPrefix(resp.StatusText, "2.0.0 OK: queued as ")
		if !ok {
			return fmt.Errorf("end of DATA: %q", resp.StatusText)
		}
		l.mu.Lock()
		l.acks = append(l.acks, accepted{id, at})
		l.mu.Unlock()
	}
}

func (l *smtpLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// end stops the senders and returns what they recorded.
func (l *smtpLoad) end(t *testing.T) []accepted {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	for _, err := range l.errs {
		t.Errorf("an SMTP sender: %v", err)
	}
	return l.acks
}

// waitCount waits until the load has had n messages accepted.
func (l *smtpLoad) waitCount(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for l.count() < n {
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%d messages accepted within %s, want %d (%v)", len(l.acks), waitTimeout, n, l.errs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openBackup opens a backup file as a store and checks its consistency.
func openBackup(t *testing.T, path string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("the backup does not open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Check(); err != nil {
		t.Fatalf("the backup is not consistent: %v", err)
	}
	return st
}

// TestBackupUnderLoad runs postern backup against postern serve while
// several SMTP clients send: the copy opens, passes the consistency check
// (bbolt's Tx.Check and Postern's own), and holds every message whose 250
// came before the backup began; mail keeps being accepted while it runs.
// Then the copy is restored as docs/operations.md says, and serves again.
func TestBackupUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, smtpAddr, apiURL, inst := serveWithAPI(t, dir)
	env := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}
	file := filepath.Join(dir, "postern-backup.db")

	load := startSMTPLoad(smtpAddr, inst.ServerToken, 6)
	load.waitCount(t, 100)
	began := time.Now()
	stdout, stderr, code := runPostern(t, dir, env, "backup", "-o", file, "-json")
	ended := time.Now()
	load.waitCount(t, load.count()+20) // and mail goes on after it
	acks := load.end(t)
	if code != 0 {
		t.Fatalf("postern backup: status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	var res struct {
		File  string
		Bytes int64
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || res.File != file {
		t.Fatalf("postern backup -json: %q (%v)", stdout, err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() != res.Bytes || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the backup file: %v, %v; want %d bytes, mode 0600", fi, err, res.Bytes)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("%s.tmp is left behind (%v)", file, err)
	}

	c := openBackup(t, file)
	before, during, inCopy := 0, 0, 0
	for _, a := range acks {
		m, err := c.Message(inst.ServerID, a.id)
		if err == nil {
			inCopy++
		}
		switch {
		case a.at.Before(began):
			before++
			if err != nil {
				t.Errorf("message %s (250 at %s, %s before the backup began) is not in the copy: %v", a.id, a.at.Format(time.StampMicro), began.Sub(a.at), err)
			} else if raw, err := c.RawMessage(inst.ServerID, a.id); err != nil || !strings.Contains(string(raw), "Subject: "+m.Subject) {
				t.Errorf("message %s in the copy: raw MIME %.80q (%v)", a.id, raw, err)
			}
		case a.at.Before(ended):
			during++
		}
	}
	t.Logf("backup of %d bytes in %s; %d messages accepted before it began, %d while it ran, %d in all; %d in the copy",
		res.Bytes, ended.Sub(began), before, during, len(acks), inCopy)
	if during == 0 {
		t.Errorf("no message was accepted while postern backup ran (%s): intake stopped during the backup", ended.Sub(began))
	}
	c.Close()

	// Restore: stop, put the copy in place of postern.db, start.
	p.stop(t)
	data := filepath.Join(dir, "postern-data")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bolt.Path(data), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p = startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-api-addr", "127.0.0.1:0")
	smtpAddr = p.listening(t, "smtp")
	apiURL = "http://" + p.listening(t, "api")
	// The tokens are those of the copy: the same server token sends, the
	// same account token lists the servers.
	send(t, smtpAddr, inst.ServerToken, "after@example.net", "after the restore")
	out, errOut, code := runPostern(t, dir, []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}, "server", "list")
	if code != 0 || !strings.Contains(out, "Default") {
		t.Fatalf("postern server list after the restore: status %d\n%s%s", code, out, errOut)
	}
	p.stop(t)
	st := openCheckedStore(t, data)
	msgs, err := st.Messages(inst.ServerID, len(acks)+10)
	if err != nil || len(msgs) != inCopy+1 {
		t.Errorf("restored store: %d messages (%v), want the copy's %d and one more", len(msgs), err, inCopy)
	}
}

// TestBackupErrors: the command's refusals.
func TestBackupErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, _, apiURL, inst := serveWithAPI(t, dir)
	env := []string{"POSTERN_URL=" + apiURL, "POSTERN_TOKEN=" + inst.AccountToken}
	file := filepath.Join(dir, "copy.db")
	fail := func(want string, extraEnv []string, args ...string) {
		t.Helper()
		_, stderr, code := runPostern(t, dir, append(append([]string{}, env...), extraEnv...), args...)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("postern %q: status %d, stderr %q; want an error with %q", args, code, stderr, want)
		}
	}

	fail("-o FILE is needed", nil, "backup")
	fail(`unexpected argument "extra"`, nil, "backup", "-o", file, "extra")
	const refused = "this token may not make backups: use the operator account's owner token"
	fail(refused, nil, "backup", "-o", file, "-token", inst.ServerToken)
	fail(refused, nil, "backup", "-o", file, "-token", "00000000-0000-4000-8000-000000000000")
	// An admin token of the operator account is not enough.
	req, err := http.NewRequest(http.MethodPost, apiURL+"/account/tokens", strings.NewReader(`{"Role":"admin"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Postmark-Account-Token", inst.AccountToken)
	resp, err := (&http.Client{Timeout: waitTimeout}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var admin api.NewTokenInfo
	err = json.NewDecoder(resp.Body).Decode(&admin)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || admin.Role != "admin" {
		t.Fatalf("an admin token: %d %+v %v", resp.StatusCode, admin, err)
	}
	fail(refused, nil, "backup", "-o", file, "-token", admin.Token)
	fail("a token is needed", []string{"POSTERN_TOKEN="}, "backup", "-o", file)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused backup left %s (%v)", file, err)
	}
	if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("a refused backup left %s.tmp (%v)", file, err)
	}

	// An existing file is kept unless -force.
	if err := os.WriteFile(file, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	fail(file+" exists: -force overwrites it", nil, "backup", "-o", file)
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Fatalf("%s was overwritten without -force", file)
	}
	stdout, stderr, code := runPostern(t, dir, env, "backup", "-o", file, "-force")
	if code != 0 || !strings.Contains(stdout, "written to "+file) {
		t.Fatalf("backup -force: status %d\n%s%s", code, stdout, stderr)
	}
	openBackup(t, file)

	// The copy is made in FILE.tmp, created new with mode 0600: a link
	// planted there is not followed, and a file left there is not
	// overwritten; the command stops and says so.
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "linked.db")
	if err := os.Symlink(victim, linked+".tmp"); err != nil {
		t.Fatal(err)
	}
	fail(linked+".tmp is there already", nil, "backup", "-o", linked)
	if b, _ := os.ReadFile(victim); string(b) != "victim" {
		t.Fatalf("the backup wrote through the link at %s.tmp", linked)
	}
	if fi, err := os.Lstat(linked + ".tmp"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link at %s.tmp was removed or replaced (%v)", linked, err)
	}
	// An existing file's mode is not kept: the copy is 0600.
	wide := filepath.Join(dir, "wide.db")
	if err := os.WriteFile(wide, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := runPostern(t, dir, env, "backup", "-o", wide, "-force"); code != 0 {
		t.Fatalf("backup -force over a 0644 file: status %d: %s", code, stderr)
	}
	if fi, err := os.Stat(wide); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the copy over a 0644 file: %v %v, want mode 0600", fi.Mode(), err)
	}
	p.stop(t)
}
