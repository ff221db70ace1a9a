package api_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/postern/postern/api"
	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
	"github.com/postern/postern/store/bolt"
	"github.com/postern/postern/store/storetest"
)

// getBackup sends GET /backup with the token in the account header.
func getBackup(t *testing.T, base, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/backup", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(accountHeader, token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

var backupFilename = regexp.MustCompile(`^attachment; filename="postern-(\d{8}-\d{6})\.db"$`)

// wantBackup checks a backup answer's headers and body, and returns the
// copy opened as a store, checked.
func wantBackup(t *testing.T, resp *http.Response) *bolt.Store {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /backup: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	m := backupFilename.FindStringSubmatch(resp.Header.Get("Content-Disposition"))
	if m == nil {
		t.Errorf("Content-Disposition %q", resp.Header.Get("Content-Disposition"))
	} else if d, err := time.Parse("20060102-150405", m[1]); err != nil || time.Since(d).Abs() > time.Hour {
		t.Errorf("Content-Disposition %q: not the time of the backup (%v)", resp.Header.Get("Content-Disposition"), err)
	}
	length, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	if err != nil {
		t.Fatalf("Content-Length %q", resp.Header.Get("Content-Length"))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != length {
		t.Fatalf("body of %d bytes, Content-Length %d", len(data), length)
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("the copy does not open: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Check(); err != nil {
		t.Fatalf("the copy is not consistent: %v", err)
	}
	return c
}

// TestBackup: the operator account's owner token gets the copy; every other
// request gets what a path that does not exist gets.
func TestBackup(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.Send(e.Inst.ServerToken, "app@example.com", []string{"someone@example.net"}, "Subject: before the backup\n\nHello.\n")

	c := wantBackup(t, getBackup(t, e.URL, e.Inst.AccountToken))
	if m, err := c.Message(e.Inst.ServerID, id); err != nil || m.Subject != "before the backup" {
		t.Errorf("the message in the copy: %+v, %v", m, err)
	}
	if op, err := c.OperatorAccount(); err != nil || op != e.Inst.AccountID {
		t.Errorf("the copy's operator account: %d, %v", op, err)
	}
	// The copy carries the tokens: the operator's owner token works on it.
	if tok, err := auth.NewAuthenticator(c).Lookup(e.Inst.AccountToken); err != nil || tok.AccountID != e.Inst.AccountID {
		t.Errorf("the owner token in the copy: %+v, %v", tok, err)
	}

	var admin api.NewTokenInfo
	e.result(e.account(http.MethodPost, "/account/tokens", e.Inst.AccountToken, map[string]any{"Role": "admin"})).into(&admin)
	acme := e.newAccount("Acme")
	var acmeServer api.Server
	e.result(e.account(http.MethodPost, "/servers", acme.AccountToken, map[string]any{"Name": "acme-production"})).into(&acmeServer)
	for _, c := range []struct {
		name, header, token string
	}{
		{"no token", "", ""},
		{"not a token", accountHeader, "00000000-0000-4000-8000-000000000000"},
		{"the operator's admin token", accountHeader, admin.Token},
		{"another account's owner token", accountHeader, acme.AccountToken},
		{"the operator's server token as an account token", accountHeader, e.Inst.ServerToken},
		{"the operator's server token", serverHeader, e.Inst.ServerToken},
		{"another account's server token", serverHeader, acmeServer.ApiTokens[0]},
		{"the operator's owner token as a server token", serverHeader, e.Inst.AccountToken},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.do(http.MethodGet, "/backup", c.header, c.token, nil)
			wantNoEndpoint(t, status, body, http.MethodGet, "/backup")
			// The same as a path that really does not exist.
			status, body = e.do(http.MethodGet, "/backups", c.header, c.token, nil)
			wantNoEndpoint(t, status, body, http.MethodGet, "/backups")
		})
	}
	// Other methods do not reveal it either, even to the operator.
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		status, body := e.account(method, "/backup", e.Inst.AccountToken, nil)
		wantNoEndpoint(t, status, body, method, "/backup")
	}
}

// TestBackupSlowClient: the store's read transaction is over before the
// copy is sent, so a client that does not read holds up no write, not even
// one that must grow the store file's memory map (which waits for every
// read transaction to end), and the temporary copy leaves nothing behind.
func TestBackupSlowClient(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), bolt.FileName), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	inst, err := auth.Init(st, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	a, err := api.New(api.Config{Store: st, Auth: auth.NewAuthenticator(st), BackupDir: spool})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)

	// A store larger than what the connection's buffers hold, so a
	// handler sending straight from the read transaction would still be
	// in it.
	enqueue := func(size int) string {
		t.Helper()
		id := store.NewMessageID()
		m := &store.Message{MessageID: id, ServerID: inst.ServerID, Recipients: []string{"a@example.net"}, ReceivedAt: time.Now().UTC(), Status: store.StatusQueued}
		if err := storetest.Enqueue(st, m, bytes.Repeat([]byte("x"), size)); err != nil {
			t.Fatal(err)
		}
		return id
	}
	var before []string
	for range 12 {
		before = append(before, enqueue(1<<20))
	}

	resp := getBackup(t, hs.URL, inst.AccountToken)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /backup: %d", resp.StatusCode)
	}
	// Nothing of the body read yet: a write that more than doubles the
	// store (and so must remap it) goes through.
	wrote := make(chan error, 1)
	var during string
	go func() {
		id := store.NewMessageID()
		during = id
		m := &store.Message{MessageID: id, ServerID: inst.ServerID, Recipients: []string{"a@example.net"}, ReceivedAt: time.Now().UTC(), Status: store.StatusQueued}
		wrote <- storetest.Enqueue(st, m, bytes.Repeat([]byte("y"), 32<<20))
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a write waited for the client to read the backup")
	}

	c := wantBackup(t, resp)
	for _, id := range before {
		if _, err := c.Message(inst.ServerID, id); err != nil {
			t.Fatalf("message %s, written before the backup: %v", id, err)
		}
	}
	if _, err := c.Message(inst.ServerID, during); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the message written after the backup began is in the copy (%v)", err)
	}
	left, err := os.ReadDir(spool)
	if err != nil || len(left) != 0 {
		t.Errorf("the backup directory holds %v (%v), want nothing", left, err)
	}
}
