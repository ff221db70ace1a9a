package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/postern/postern/auth"
	"github.com/postern/postern/store"
)

// backupStall bounds how long a backup download may make no progress
// before the connection is dropped: the deadline moves with every chunk
// sent, so a large copy to a slow client is fine and a client that stops
// reading is not kept forever.
const backupStall = 2 * time.Minute

// backupChunk is how much is sent between deadline moves.
const backupChunk = 1 << 20

// registerBackup adds GET /backup (Postern's own): a consistent copy of
// the whole store, for the operator account's owner tokens only.
func (a *API) registerBackup() {
	a.mux.HandleFunc("GET /backup", a.backup)
}

// backup serves GET /backup. Any request but one with an owner token of
// the operator account gets exactly the answer of a path that does not
// exist, whatever token it carries or lacks (a server token, an admin
// token, another account's owner token), so that nobody else learns the
// endpoint exists.
//
// The copy is first written, through one read transaction of the store,
// into an unlinked temporary file in BackupDir, and sent from there: the
// read transaction then lasts as long as a local copy, however slowly the
// client reads. (A read transaction held open stalls every write that
// needs the store file's memory map to grow; see bolt.Store's Backup.)
func (a *API) backup(w http.ResponseWriter, r *http.Request) {
	tok, err := a.cfg.Auth.Lookup(r.Header.Get("X-Postmark-Account-Token"))
	if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
		a.fail(w, r, err)
		return
	}
	op, opErr := a.cfg.Store.OperatorAccount()
	if opErr != nil && !errors.Is(opErr, store.ErrNotFound) {
		a.fail(w, r, opErr)
		return
	}
	// A backend without online backup (PostgreSQL has its own tools) has
	// no such endpoint for anyone.
	backuper, canBackup := a.cfg.Store.(store.Backuper)
	if err != nil || opErr != nil || !canBackup || tok.Kind != store.KindAccount || tok.AccountID != op || tok.Role != store.RoleOwner {
		writeError(w, http.StatusNotFound, codeNotFound, "No such endpoint: "+r.Method+" "+r.URL.Path)
		return
	}

	f, err := os.CreateTemp(a.cfg.BackupDir, ".postern-backup-*.tmp")
	if err != nil {
		a.fail(w, r, fmt.Errorf("backup: a temporary file for the copy: %w", err))
		return
	}
	// Unlinked at once where the system allows it (the space comes back
	// when the file is closed, even if Postern is killed); removed at the
	// end otherwise.
	removed := os.Remove(f.Name()) == nil
	defer func() {
		f.Close()
		if !removed {
			os.Remove(f.Name())
		}
	}()
	began := a.cfg.Now()
	size, err := backuper.Backup(f)
	if err != nil {
		a.fail(w, r, fmt.Errorf("backup: copying the store: %w", err))
		return
	}
	copied := a.cfg.Now()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		a.fail(w, r, err)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Content-Disposition", `attachment; filename="postern-`+began.UTC().Format("20060102-150405")+`.db"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	buf := make([]byte, backupChunk)
	var sent int64
	for {
		// Not every ResponseWriter supports deadlines (httptest's
		// recorder does not); the server's own then stand.
		_ = rc.SetWriteDeadline(time.Now().Add(backupStall))
		n, rerr := f.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			sent += int64(m)
			if werr != nil {
				a.cfg.Logger.Warn("backup: the client did not take the copy", "token", tok.Prefix, "bytes", size, "sent", sent, "err", werr)
				return
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The status is sent: the client sees a short body.
			a.cfg.Logger.Error("backup: reading the copy", "err", rerr)
			return
		}
	}
	a.cfg.Logger.Info("backup sent", "token", tok.Prefix, "bytes", size, "copy", copied.Sub(began).String(), "took", a.cfg.Now().Sub(began).String())
}
