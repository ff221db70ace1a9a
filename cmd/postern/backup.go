package main

// postern backup: a consistent copy of a running Postern's store, over its
// HTTP API (GET /backup), with the operator account's owner token. The
// copy goes to FILE.tmp (created new, mode 0600), is synced, opened and checked, and only then
// renamed to FILE, so FILE is never a partial or broken copy.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/postern/postern/api/client"
	"github.com/postern/postern/internal/app"
)

const backupUsage = `Usage: postern backup -o FILE [-force] [-token TOKEN] [-url URL] [-json]

Writes a consistent copy of the store of a running postern serve to FILE,
over its HTTP API, while Postern goes on accepting and delivering mail.
The copy is checked (it opens and passes the store's consistency check)
before it is given its name. Restore it by stopping Postern and putting
it in place of postern.db in the data directory (see docs/operations.md, "Backup and restore").

Flags:
  -o FILE        where to write the copy (required)
  -force         overwrite FILE if it exists
  -token TOKEN   an owner token of the operator account (POSTERN_TOKEN)
  -url URL       the API's base URL (POSTERN_URL, default http://127.0.0.1:8080)
  -json          print {"File", "Bytes"} as JSON, for scripts
`

// backupHeaderTimeout bounds the wait for the answer's headers: Postern
// copies the whole store before it starts sending.
const backupHeaderTimeout = 30 * time.Minute

// errBackupRefused is the answer to a token that may not make backups.
var errBackupRefused = errors.New("backup: this token may not make backups: use the operator account's owner token")

func backupCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage) }
	var f cliFlags
	f.bind(fs, "an owner token of the operator account")
	var out string
	var force bool
	fs.StringVar(&out, "o", "", "where to write the copy")
	fs.BoolVar(&force, "force", false, "overwrite FILE if it exists")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("backup: unexpected argument %q", pos[0])
	}
	if out == "" {
		fmt.Fprint(stderr, backupUsage)
		return errors.New("backup: -o FILE is needed")
	}
	if !force {
		if _, err := os.Lstat(out); err == nil {
			return fmt.Errorf("backup: %s exists: -force overwrites it", out)
		}
	}
	c, err := f.client("backup", client.AccountToken)
	if err != nil {
		return err
	}

	tmp := out + ".tmp"
	file, err := createPrivate(tmp)
	if err != nil {
		return err
	}
	n, err := c.backup(file)
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := app.CheckBackup(tmp); err != nil {
		return fmt.Errorf("backup: the copy in %s is not usable (kept for inspection): %w", tmp, err)
	}
	if !force {
		if _, err := os.Lstat(out); err == nil {
			os.Remove(tmp)
			return fmt.Errorf("backup: %s appeared during the backup: -force overwrites it", out)
		}
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: %w", err)
	}
	syncDir(filepath.Dir(out))
	if f.json {
		return json.NewEncoder(stdout).Encode(struct {
			File  string
			Bytes int64
		}{out, n})
	}
	fmt.Fprintf(stdout, "Backup of %d bytes written to %s (consistency checked).\n", n, out)
	return nil
}

// createPrivate creates the file at path for the copy, which holds token
// hashes, DKIM private keys and every message: mode 0600, and only if
// nothing is there, not even a symbolic link, so that the copy can
// neither be written through a link planted at the name nor inherit an
// existing file's mode.
func createPrivate(path string) (*os.File, error) {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("backup: %s is there already (left by a backup that was interrupted, or not ours): remove it and run backup again", path)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return file, nil
}

// backup downloads the copy into file, syncs and closes it.
func (c *cliClient) backup(file *os.File) (int64, error) {
	defer file.Close()
	n, err := c.Backup(file, backupHeaderTimeout)
	var refused *client.Error
	if errors.As(err, &refused) && (refused.Status == http.StatusUnauthorized || refused.Status == http.StatusNotFound) {
		// Postern answers 404, as for a path that does not exist, to
		// every token but the operator's owner tokens.
		return 0, errBackupRefused
	}
	if err != nil {
		return n, c.wrap(err)
	}
	if err := file.Sync(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	if err := file.Close(); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// syncDir makes a rename in dir durable, where the system allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
