package main

// Tests of the real binary: TestMain builds it once, and each test runs it
// as a subprocess, the way an operator or a script does.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/config"
	"github.com/postern/postern/internal/testutil"
	"github.com/postern/postern/internal/testutil/pgtest"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
)

// postern is the binary every test here runs (see testutil.BuildBinary).
var postern testutil.Binary

// Bounds on waits, only so that a broken binary fails the test instead of
// hanging it; nothing is timed.
const (
	runTimeout  = 2 * time.Minute // a whole subprocess's life
	waitTimeout = 30 * time.Second
)

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	bin, cleanup, err := testutil.BuildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	postern = bin
	return pgtest.Main(m)
}

// --- subprocesses ---

// output collects a subprocess's stream line by line and lets a test wait
// for a line.
type output struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	eof     bool
	changed chan struct{} // closed and replaced on every new line and at EOF
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.partial = append(o.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		o.lines = append(o.lines, string(o.partial[:i]))
		o.partial = o.partial[i+1:]
		added = true
	}
	if added {
		close(o.changed)
		o.changed = make(chan struct{})
	}
	return len(p), nil
}

// finish marks the end of the stream (the process exited).
func (o *output) finish() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.partial) > 0 {
		o.lines = append(o.lines, string(o.partial))
		o.partial = nil
	}
	o.eof = true
	close(o.changed)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.lines, "\n")
	if len(o.lines) > 0 {
		s += "\n"
	}
	return s + string(o.partial)
}

// waitFor returns the submatches of the first line matching re, waiting
// for it; it fails the test if the stream ends first.
func (o *output) waitFor(t *testing.T, re *regexp.Regexp, what string) []string {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		for _, l := range o.lines {
			if m := re.FindStringSubmatch(l); m != nil {
				o.mu.Unlock()
				return m
			}
		}
		eof, changed := o.eof, o.changed
		o.mu.Unlock()
		if eof {
			t.Fatalf("%s: the stream ended without a line matching %s:\n%s", what, re, o)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: no line matching %s within %s:\n%s", what, re, waitTimeout, o)
		}
	}
}

// proc is a running postern.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *output
	done           chan struct{} // closed when the process has exited
	probeSignals   bool          // see sigterm
}

// testEnv is this process's environment without POSTERN_* variables, so
// the machine running the tests cannot change their outcome, plus extra.
// The HTTP API and the metrics listener listen on free ports (their
// defaults, 8080 and 9090, would be shared by tests running in parallel);
// a test's extra POSTERN_API_ADDR, POSTERN_METRICS_ADDR or flag overrides
// that. A binary built with -race would sleep a second at exit
// to let other threads report: GORACE turns that off.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POSTERN_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	env = append(env, "POSTERN_API_ADDR=127.0.0.1:0", "POSTERN_METRICS_ADDR=127.0.0.1:0", "POSTERN_CONSOLE_ADDR=127.0.0.1:0")
	return append(env, extra...)
}

// startPostern runs postern in dir with the environment extended by env.
// The process is killed, if still running, when the test ends.
func startPostern(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	cmd := exec.CommandContext(ctx, postern.Path, args...)
	probe := false
	if len(args) > 0 && args[0] == "serve" && runtime.GOOS == "linux" {
		// serve starts with SIGINT ignored, as a shell's trap leaves
		// it for the program it execs, so that sigterm can see when
		// serve's signal handler is in place.
		if sh, err := exec.LookPath("sh"); err == nil {
			cmd = exec.CommandContext(ctx, sh, append([]string{"-c", `trap '' INT; exec "$0" "$@"`, postern.Path}, args...)...)
			probe = true
		}
	}
	cmd.Dir = dir
	cmd.Env = testEnv(env...)
	cmd.WaitDelay = 5 * time.Second
	p := launch(t, cmd, cancel)
	p.probeSignals = probe
	return p
}

// launch starts cmd, collecting its output, and stops it (cancel kills
// it, if still running) when the test ends.
func launch(t *testing.T, cmd *exec.Cmd, cancel context.CancelFunc) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stdout: newOutput(), stderr: newOutput(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		p.stdout.finish()
		p.stderr.finish()
		close(p.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitTimeout):
		t.Fatalf("postern (%q) did not exit within %s\nstdout:\n%s\nstderr:\n%s",
			p.cmd.Args, waitTimeout, p.stdout, p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// sigterm sends SIGTERM once serve is ready for it.
//
// serve installs its signal handler (signal.NotifyContext in main.go) only
// after its listeners are serving and it has logged "postern started", so
// a SIGTERM sent as soon as it accepts mail can kill it on the spot,
// whatever its sessions are doing. No output marks the moment the handler
// is in place, but the process shows it: serve runs with SIGINT ignored
// (see startPostern), which the Go runtime respects until
// signal.NotifyContext(…, SIGINT, SIGTERM) installs a handler for it, and
// that appears in /proc/PID/status. Elsewhere than Linux, the log line is
// the best there is.
func (p *proc) sigterm(t *testing.T) {
	t.Helper()
	p.stderr.waitFor(t, regexp.MustCompile(`msg="postern started"`), "postern serve")
	if p.probeSignals {
		deadline := time.Now().Add(waitTimeout)
		for {
			caught, err := catchesSignal(p.cmd.Process.Pid, syscall.SIGINT)
			if caught {
				break
			}
			select {
			case <-p.done:
				t.Fatalf("postern exited with %d%s before handling signals\n%s", p.cmd.ProcessState.ExitCode(), p.diedOfSignal(), p.stderr)
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("postern serve installed no handler for SIGINT within %s (%v)\n%s", waitTimeout, err, p.stderr)
			}
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// catchesSignal reports whether process pid has a handler for sig.
func catchesSignal(pid int, sig syscall.Signal) (bool, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false, fmt.Errorf("%s: %v", line, err)
			}
			return mask&(1<<(uint(sig)-1)) != 0, nil
		}
	}
	return false, fmt.Errorf("no SigCgt line in /proc/%d/status", pid)
}

// diedOfSignal explains an exit by signal, which a graceful shutdown
// never is.
func (p *proc) diedOfSignal() string {
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf(" (killed by %v instead of shutting down)", ws.Signal())
	}
	return ""
}

// stop sends SIGTERM and waits for the process to exit with status 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.sigterm(t)
	if code := p.wait(t); code != 0 {
		t.Fatalf("postern exited with %d%s after SIGTERM, want 0\nstderr:\n%s", code, p.diedOfSignal(), p.stderr)
	}
}

// listening waits for the "listening" log line of the listener named
// (smtp or smtps) and returns its address.
func (p *proc) listening(t *testing.T, name string) string {
	t.Helper()
	re := regexp.MustCompile(`\bmsg=listening listener=` + name + ` addr=(\S+)`)
	return p.stderr.waitFor(t, re, "postern serve")[1]
}

// summary waits for the summary a first serve prints and reads it.
func (p *proc) summary(t *testing.T) installation {
	t.Helper()
	p.stdout.waitFor(t, regexp.MustCompile(`^These tokens are shown only now`), "stdout of postern serve")
	return parseSummary(t, p.stdout.String())
}

// runPostern runs postern to completion.
func runPostern(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	p := startPostern(t, dir, env, args...)
	code = p.wait(t)
	return p.stdout.String(), p.stderr.String(), code
}

// --- a small SMTP client ---

type smtpClient struct {
	t    *testing.T
	conn net.Conn
	text *textproto.Conn
}

// dialSMTP connects to addr and checks the greeting.
func dialSMTP(t *testing.T, addr string) *smtpClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(waitTimeout))
	c := &smtpClient{t: t, conn: conn, text: textproto.NewConn(conn)}
	t.Cleanup(func() { conn.Close() })
	host, _ := os.Hostname()
	if greeting := c.reply(); greeting != "220 "+host+" ESMTP Postern" {
		t.Fatalf("greeting %q, want %q", greeting, "220 "+host+" ESMTP Postern")
	}
	return c
}

func (c *smtpClient) reply() string {
	c.t.Helper()
	code, msg, err := c.text.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return fmt.Sprintf("%d %s", code, msg)
}

// expect sends a command and fails unless the reply starts with want.
func (c *smtpClient) expect(want, format string, args ...any) string {
	c.t.Helper()
	if err := c.text.PrintfLine(format, args...); err != nil {
		c.t.Fatal(err)
	}
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: reply %q, want %q…", strings.Fields(fmt.Sprintf(format, args...))[0], got, want)
	}
	return got
}

// login says EHLO and authenticates with AUTH PLAIN in plaintext, which
// loopback clients may do.
func (c *smtpClient) login(token string) {
	c.t.Helper()
	c.expect("250", "EHLO client.test")
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + token + "\x00" + token))
	c.expect("235 2.7.0 Authentication successful", "AUTH PLAIN %s", ir)
}

// data sends DATA and the message, and returns the MessageID of the
// "250 2.0.0 OK: queued as <id>" reply.
func (c *smtpClient) data(msg string) string {
	c.t.Helper()
	c.expect("354", "DATA")
	w := c.text.DotWriter()
	if _, err := io.WriteString(w, msg); err != nil {
		c.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		c.t.Fatal(err)
	}
	got := c.reply()
	const prefix = "250 2.0.0 OK: queued as "
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("end of DATA: reply %q, want %q…", got, prefix)
	}
	return strings.TrimPrefix(got, prefix)
}

func (c *smtpClient) quit() {
	c.t.Helper()
	c.expect("221", "QUIT")
	c.conn.Close()
}

// send authenticates and sends one message to rcpt with subject.
func send(t *testing.T, addr, token, rcpt, subject string) string {
	t.Helper()
	c := dialSMTP(t, addr)
	c.login(token)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<%s>", rcpt)
	id := c.data(message(rcpt, subject))
	c.quit()
	return id
}

func message(rcpt, subject string) string {
	return "From: App <app@example.com>\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// --- the store, after postern has exited ---

// openCheckedStore opens a data directory's store once postern is done with it,
// checks its consistency, and closes it when the test ends.
func openCheckedStore(t *testing.T, dataDir string) *bolt.Store {
	t.Helper()
	st, err := bolt.Open(bolt.Path(dataDir), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("closing the store: %v", err)
		}
	})
	if err := st.Check(); err != nil {
		t.Errorf("store consistency: %v", err)
	}
	return st
}

func wantMessage(t *testing.T, st *bolt.Store, serverID int64, id, subject, rcpt string) {
	t.Helper()
	m, err := st.Message(serverID, id)
	if err != nil {
		t.Fatalf("message %s: %v", id, err)
	}
	// The relay may have run before the stop: the Sandbox server's message
	// is then recorded as delivered.
	if m.Subject != subject || !slices.Equal(m.Recipients, []string{rcpt}) || (m.Status != store.StatusQueued && m.Status != store.StatusSent) {
		t.Errorf("message %s: Subject %q, Recipients %q, Status %q; want %q, [%s], %s or %s",
			id, m.Subject, m.Recipients, m.Status, subject, rcpt, store.StatusQueued, store.StatusSent)
	}
	if m.Status == store.StatusSent {
		evs, err := st.Events(serverID, id)
		if err != nil || len(evs) != 1 || evs[0].Type != store.EventDelivered || evs[0].Recipient != rcpt {
			t.Errorf("message %s: Sent, with events %+v (%v); want one Delivered", id, evs, err)
		}
	}
}

func fileSHA256(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// installation is the JSON `postern init -json` prints.
type installation struct {
	AccountID    int64
	AccountToken string
	ServerID     int64
	ServerName   string
	ServerToken  string
	OwnerEmail   string
	SignInURL    string
}

// initialized runs postern init -json in dir and returns what it printed
// and the data directory it made.
func initialized(t *testing.T, dir string) (installation, string) {
	t.Helper()
	out, errOut, code := runPostern(t, dir, nil, "init", "-json")
	if code != 0 {
		t.Fatalf("init: %d\n%s", code, errOut)
	}
	var inst installation
	if err := json.Unmarshal([]byte(out), &inst); err != nil {
		t.Fatal(err)
	}
	return inst, filepath.Join(dir, "postern-data")
}

// describeStore says what a store holds of an installation, as a string
// to compare before and after something that must change nothing.
func describeStore(t *testing.T, dataDir string, inst installation) string {
	t.Helper()
	st, err := bolt.Open(bolt.Path(dataDir), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("store consistency: %v", err)
	}
	ok, err := st.Initialized()
	if err != nil || !ok {
		t.Fatalf("Initialized: %v, %v", ok, err)
	}
	a := auth.NewAuthenticator(st)
	serverTok, err := a.SMTPCredentials(inst.ServerToken, inst.ServerToken)
	if err != nil {
		t.Fatalf("the server token does not authenticate: %v", err)
	}
	if serverTok.Kind != store.KindServer || serverTok.ServerID != inst.ServerID || serverTok.AccountID != inst.AccountID {
		t.Errorf("server token: %+v, want server %d of account %d", serverTok, inst.ServerID, inst.AccountID)
	}
	accountTok, err := a.Lookup(inst.AccountToken)
	if err != nil {
		t.Fatalf("the account token is unknown: %v", err)
	}
	if accountTok.Kind != store.KindAccount || accountTok.AccountID != inst.AccountID || accountTok.Role != store.RoleOwner {
		t.Errorf("account token: %+v, want owner of account %d", accountTok, inst.AccountID)
	}
	if _, err := a.SMTPCredentials(inst.AccountToken, inst.AccountToken); !errors.Is(err, auth.ErrAccountTokenOverSMTP) {
		t.Errorf("account token over SMTP: %v, want ErrAccountTokenOverSMTP", err)
	}
	srv, err := st.Server(inst.ServerID)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Name != auth.DefaultServerName || srv.AccountID != inst.AccountID || srv.DeliveryType != store.DeliverySandbox || !srv.SmtpApiActivated {
		t.Errorf("server: %+v", srv)
	}
	acct, err := st.Account(inst.AccountID)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Messages(inst.ServerID, 100)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("account %+v\nserver %+v\nserver token %+v\naccount token %+v\n%d messages",
		acct, srv, serverTok, accountTok, len(msgs))
}

// --- postern init ---

func TestInitJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// init listens on nothing: the link is on the console's setting
	// (the tests' environment has port 0).
	stdout, stderr, code := runPostern(t, dir, []string{"POSTERN_CONSOLE_ADDR=127.0.0.1:8081"}, "init", "-data", data, "-json")
	if code != 0 {
		t.Fatalf("postern init exited with %d:\n%s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("postern init wrote to stderr:\n%s", stderr)
	}

	// Exactly one JSON object with exactly the five keys.
	dec := json.NewDecoder(strings.NewReader(stdout))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, stdout)
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON value (%v):\n%s", err, stdout)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"AccountID", "AccountToken", "OwnerEmail", "ServerID", "ServerName", "ServerToken", "SignInURL"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	var inst installation
	strict := json.NewDecoder(strings.NewReader(stdout))
	strict.DisallowUnknownFields()
	if err := strict.Decode(&inst); err != nil {
		t.Fatalf("decoding %s: %v", stdout, err)
	}
	if inst.AccountID <= 0 || inst.ServerID <= 0 {
		t.Errorf("IDs %d, %d, want positive", inst.AccountID, inst.ServerID)
	}
	if inst.ServerName != "Default" {
		t.Errorf("ServerName %q, want Default", inst.ServerName)
	}
	for name, tok := range map[string]string{"AccountToken": inst.AccountToken, "ServerToken": inst.ServerToken} {
		if !uuidRe.MatchString(tok) {
			t.Errorf("%s %q is not a UUID", name, tok)
		}
	}
	if inst.AccountToken == inst.ServerToken {
		t.Error("the account and server tokens are the same")
	}
	// The console's first person, with a one-time link on the console's
	// default address.
	if inst.OwnerEmail != "owner@localhost" || !regexp.MustCompile(`^http://127\.0\.0\.1:8081/signin/link\?token=[A-Za-z0-9_-]{43}$`).MatchString(inst.SignInURL) {
		t.Errorf("OwnerEmail %q, SignInURL %q", inst.OwnerEmail, inst.SignInURL)
	}

	// The data directory and the store are private.
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory: %v, mode %v, want 0700", err, fi.Mode().Perm())
	}
	dbPath := bolt.Path(data)
	if fi, err := os.Stat(dbPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	before := describeStore(t, data, inst)
	sumBefore := fileSHA256(t, dbPath)

	// A second init on the same directory fails and changes nothing.
	stdout2, stderr2, code2 := runPostern(t, dir, nil, "init", "-data", data, "-json")
	if code2 != 1 {
		t.Errorf("second init exited with %d, want 1", code2)
	}
	if stdout2 != "" {
		t.Errorf("second init printed on stdout:\n%s", stdout2)
	}
	if !strings.Contains(stderr2, data) || !strings.Contains(stderr2, "already initialised") || !strings.Contains(stderr2, "nothing was changed") {
		t.Errorf("second init's error does not say that %s is already initialised and nothing was changed:\n%s", data, stderr2)
	}
	if fileSHA256(t, dbPath) != sumBefore {
		t.Error("the second init changed the store file")
	}
	if after := describeStore(t, data, inst); after != before {
		t.Errorf("the store reads differently after the second init:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

var (
	serverTokenRe  = regexp.MustCompile(`server token: ([0-9a-f-]{36})\b`)
	accountTokenRe = regexp.MustCompile(`owner token:\s+([0-9a-f-]{36})\b`)
	serverIDRe     = regexp.MustCompile(`Server "Default" \(ID (\d+), Sandbox\)`)
	swaksRe        = regexp.MustCompile(`swaks --server (\S+) --tls --auth PLAIN --auth-user (\S+) --auth-password (\S+) --from \S+ --to \S+`)
)

// parseSummary reads the installation from the summary that init and a
// first serve print.
func parseSummary(t *testing.T, out string) installation {
	t.Helper()
	var inst installation
	tok := serverTokenRe.FindStringSubmatch(out)
	acct := accountTokenRe.FindStringSubmatch(out)
	id := serverIDRe.FindStringSubmatch(out)
	if tok == nil || acct == nil || id == nil {
		t.Fatalf("the summary lacks the server token, the owner token or the server:\n%s", out)
	}
	inst.ServerToken, inst.AccountToken, inst.ServerName = tok[1], acct[1], "Default"
	inst.ServerID, _ = strconv.ParseInt(id[1], 10, 64)
	return inst
}

// swaksLine returns the swaks command line of a summary, its continuation
// lines joined.
func swaksLine(t *testing.T, out string) []string {
	t.Helper()
	joined := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(out, "")
	m := swaksRe.FindStringSubmatch(joined)
	if m == nil {
		t.Fatalf("no swaks command line in the summary:\n%s", out)
	}
	return m
}

func TestInitSummary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		wantAddr string
	}{
		{"default", nil, "127.0.0.1:2525"},
		{"smtp-addr", []string{"-smtp-addr", "127.0.0.1:2600"}, "127.0.0.1:2600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			stdout, stderr, code := runPostern(t, dir, nil, append([]string{"init"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("postern init exited with %d:\n%s", code, stderr)
			}
			if json.Valid([]byte(stdout)) {
				t.Errorf("init without -json printed JSON:\n%s", stdout)
			}
			inst := parseSummary(t, stdout)
			for _, want := range []string{"Postern initialised in ./postern-data", "shown only now"} {
				if !strings.Contains(stdout, want) {
					t.Errorf("the summary lacks %q:\n%s", want, stdout)
				}
			}
			sw := swaksLine(t, stdout)
			if sw[1] != tc.wantAddr || sw[2] != inst.ServerToken || sw[3] != inst.ServerToken {
				t.Errorf("swaks line %q, want --server %s and the server token %s as user and password", sw[0], tc.wantAddr, inst.ServerToken)
			}
			// The summary's tokens are the store's.
			acct, err := func() (store.Token, error) {
				st, err := bolt.Open(bolt.Path(filepath.Join(dir, "postern-data")), bolt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				return auth.NewAuthenticator(st).Lookup(inst.AccountToken)
			}()
			if err != nil {
				t.Fatalf("the summary's owner token is unknown: %v", err)
			}
			inst.AccountID = acct.AccountID
			describeStore(t, filepath.Join(dir, "postern-data"), inst)
		})
	}
}

// --- postern serve ---

func TestServeWithoutConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "postern-data")

	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0")
	addr := p.listening(t, "smtp")
	if host, port, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("listening on %q, want 127.0.0.1 and a port", addr)
	}
	// A new data directory: the tokens are printed, once.
	inst := p.summary(t)
	for _, f := range []string{bolt.FileName, config.SelfSignedCert, config.SelfSignedKey} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("./postern-data/%s: %v", f, err)
		}
	}

	id := send(t, addr, inst.ServerToken, "alice@example.net", "first run")
	p.stop(t)

	logs := p.stderr.String()
	for _, want := range []string{"postern started", "shutting down", "postern stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, inst.ServerToken) || strings.Contains(logs, inst.AccountToken) {
		t.Errorf("a token appears in the log:\n%s", logs)
	}
	if n := strings.Count(p.stdout.String(), "server token: "); n != 1 {
		t.Errorf("the server token was announced %d times:\n%s", n, p.stdout)
	}
	func() {
		st := openCheckedStore(t, data)
		wantMessage(t, st, inst.ServerID, id, "first run", "alice@example.net")
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}()

	// A second serve on the same directory keeps the installation and
	// prints no tokens.
	p2 := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0")
	addr2 := p2.listening(t, "smtp")
	id2 := send(t, addr2, inst.ServerToken, "bob@example.net", "second run")
	p2.stop(t)
	if out := p2.stdout.String(); out != "" {
		t.Errorf("the second serve printed on stdout:\n%s", out)
	}
	if strings.Contains(p2.stderr.String(), inst.ServerToken) {
		t.Errorf("a token appears in the second serve's log:\n%s", p2.stderr)
	}
	st := openCheckedStore(t, data)
	wantMessage(t, st, inst.ServerID, id, "first run", "alice@example.net")
	wantMessage(t, st, inst.ServerID, id2, "second run", "bob@example.net")
}

// heldAddr returns the address of a listener that stays open until the
// test ends, so that binding it fails.
func heldAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestServeEnvironmentAndFlags(t *testing.T) {
	t.Parallel()

	t.Run("flag-beats-environment", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		busy := heldAddr(t)
		envData := filepath.Join(dir, "from-env")
		p := startPostern(t, dir, []string{"POSTERN_SMTP_ADDR=" + busy, "POSTERN_DATA=" + envData},
			"serve", "--smtp-addr", "127.0.0.1:0")
		addr := p.listening(t, "smtp")
		if addr == busy || !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("listening on %s: the flag (127.0.0.1:0) should beat POSTERN_SMTP_ADDR (%s)", addr, busy)
		}
		inst := p.summary(t)
		id := send(t, addr, inst.ServerToken, "carol@example.net", "env and flags")
		p.stop(t)
		// POSTERN_DATA applied: no ./postern-data.
		if _, err := os.Stat(filepath.Join(dir, "postern-data")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("./postern-data exists (%v) though POSTERN_DATA names another directory", err)
		}
		wantMessage(t, openCheckedStore(t, envData), inst.ServerID, id, "env and flags", "carol@example.net")
	})

	t.Run("environment-beats-file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		busy := heldAddr(t)
		file := filepath.Join(dir, "postern.conf")
		conf := "# test configuration\nsmtp-addr = " + busy + "\nmax-recipients = 2\n"
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		p := startPostern(t, dir, []string{"POSTERN_CONFIG=" + file, "POSTERN_SMTP_ADDR=127.0.0.1:0"}, "serve")
		addr := p.listening(t, "smtp")
		if addr == busy {
			t.Errorf("listening on %s: POSTERN_SMTP_ADDR should beat the file", addr)
		}
		inst := p.summary(t)
		// The file's max-recipients applies.
		c := dialSMTP(t, addr)
		c.login(inst.ServerToken)
		c.expect("250", "MAIL FROM:<app@example.com>")
		c.expect("250", "RCPT TO:<a@example.net>")
		c.expect("250", "RCPT TO:<b@example.net>")
		c.expect("452 4.5.3 Too many recipients; at most 2 per message", "RCPT TO:<c@example.net>")
		c.quit()
		p.stop(t)
	})

	for _, tc := range []struct {
		name    string
		env     []string
		args    []string
		setting string // what stderr must name
	}{
		{"max-recipients-flag-zero", nil, []string{"-max-recipients", "0"}, "max-recipients"},
		{"max-recipients-flag-not-a-number", nil, []string{"-max-recipients", "many"}, "max-recipients"},
		{"max-recipients-env-not-a-number", []string{"POSTERN_MAX_RECIPIENTS=many"}, nil, "POSTERN_MAX_RECIPIENTS"},
		{"log-format-env", []string{"POSTERN_LOG_FORMAT=xml"}, nil, "log-format"},
		{"log-level-flag", nil, []string{"-log-level", "loud"}, "log-level"},
		{"smtp-addr-flag", nil, []string{"-smtp-addr", "nowhere"}, "smtp-addr"},
		{"shutdown-timeout-env", []string{"POSTERN_SHUTDOWN_TIMEOUT=-1s"}, nil, "shutdown-timeout"},
		{"all-listeners-off", []string{"POSTERN_SMTP_ADDR=off"}, []string{"-smtps-addr", "off"}, "smtp-addr"},
		{"missing-config-file", []string{"POSTERN_CONFIG=does-not-exist.conf"}, nil, "does-not-exist.conf"},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			stdout, stderr, code := runPostern(t, dir, tc.env, append([]string{"serve"}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if !strings.Contains(stderr, tc.setting) {
				t.Errorf("stderr does not name %s:\n%s", tc.setting, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout:\n%s", stdout)
			}
			if _, err := os.Stat(filepath.Join(dir, "postern-data")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("./postern-data was created (%v) with an invalid configuration", err)
			}
		})
	}

	t.Run("invalid/address-in-use", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		busy := heldAddr(t)
		_, stderr, code := runPostern(t, dir, nil, "serve", "-smtp-addr", busy)
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
		if !strings.Contains(stderr, "smtp-addr") || !strings.Contains(stderr, busy) {
			t.Errorf("stderr does not name smtp-addr and %s:\n%s", busy, stderr)
		}
	})
}

func TestServeGracefulShutdown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0", "-shutdown-timeout", "90s")
	addr := p.listening(t, "smtp")
	inst := p.summary(t)

	// A session in the middle of a transaction.
	c := dialSMTP(t, addr)
	c.login(inst.ServerToken)
	c.expect("250", "MAIL FROM:<app@example.com>")
	c.expect("250", "RCPT TO:<dora@example.net>")

	p.sigterm(t)
	select {
	case <-p.done:
		t.Fatalf("postern exited with %d%s on SIGTERM with a session open\n%s", p.cmd.ProcessState.ExitCode(), p.diedOfSignal(), p.stderr)
	default:
	}
	p.stderr.waitFor(t, regexp.MustCompile(`msg="shutting down"`), "postern serve")

	// The listener closes: new connections are refused. It closes just
	// after the log line, so try until it has. A connection caught in the
	// backlog as the listener closes is reset; the next one is refused.
	deadline := time.Now().Add(waitTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err == nil {
			conn.Close()
		} else if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a new connection after SIGTERM: %v, want connection refused", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("new connections still accepted %s after SIGTERM", waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The open session finishes its message.
	id := c.data(message("dora@example.net", "during shutdown"))
	c.quit()

	if code := p.wait(t); code != 0 {
		t.Fatalf("exit status %d%s after a graceful shutdown, want 0\n%s", code, p.diedOfSignal(), p.stderr)
	}
	logs := p.stderr.String()
	if strings.Contains(logs, "still open") || !strings.Contains(logs, "postern stopped") {
		t.Errorf("the shutdown was not clean:\n%s", logs)
	}
	wantMessage(t, openCheckedStore(t, filepath.Join(dir, "postern-data")), inst.ServerID, id, "during shutdown", "dora@example.net")
}

// --- other commands ---

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "-version", "--version"} {
		stdout, stderr, code := runPostern(t, t.TempDir(), nil, arg)
		if code != 0 || stdout != "postern "+postern.Version+"\n" || stderr != "" {
			t.Errorf("postern %s: status %d, stdout %q, stderr %q; want 0, %q, nothing",
				arg, code, stdout, stderr, "postern "+postern.Version+"\n")
		}
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Usage: postern <command>"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
	} {
		_, stderr, code := runPostern(t, t.TempDir(), nil, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("postern %q: status %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	stdout, _, code := runPostern(t, t.TempDir(), nil, "help")
	if code != 0 || !strings.Contains(stdout, "serve") || !strings.Contains(stdout, "init") {
		t.Errorf("postern help: status %d, stdout %q", code, stdout)
	}
}
