package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestUserCommands drives postern user against the real binary.
func TestUserCommands(t *testing.T) {
	dir := t.TempDir()
	inst, _ := initialized(t, dir)
	p := startPostern(t, dir, nil, "serve", "-smtp-addr", "127.0.0.1:0")
	env := []string{"POSTERN_URL=http://" + p.listening(t, "api"), "POSTERN_TOKEN=" + inst.AccountToken}

	// A password read from standard input, never from a flag ps shows.
	cmd := exec.Command(postern.Path, "user", "add", "-email", "ann@example.com", "-role", "Owner", "-password-stdin", "-json")
	cmd.Env, cmd.Dir, cmd.Stdin = testEnv(env...), dir, strings.NewReader("a long passphrase\n")
	out, err := cmd.Output()
	var ann struct {
		ID        int64
		Role      string
		SignInURL string
	}
	if err != nil || json.Unmarshal(out, &ann) != nil || ann.Role != "Owner" || ann.SignInURL != "" {
		t.Fatalf("user add with a password: %v\n%s", err, out)
	}
	stdout, stderr, code := runPostern(t, dir, env, "user", "add", "-email", "bob@client.example", "-role", "Member", "-server", "1:Viewer")
	if code != 0 || !strings.Contains(stdout, "One-time link to set a password") {
		t.Fatalf("user add without a password: %d\n%s%s", code, stdout, stderr)
	}
	stdout, stderr, code = runPostern(t, dir, env, "user", "list")
	if code != 0 || !strings.Contains(stdout, "owner@localhost") || !strings.Contains(stdout, "ann@example.com") || !strings.Contains(stdout, "1:Viewer") || !strings.Contains(stdout, "3 people") {
		t.Errorf("user list: %d\n%s%s", code, stdout, stderr)
	}
	// owner@localhost leaves, Ann being an Owner too; then Ann is the
	// last Owner, who stays.
	if _, stderr, code := runPostern(t, dir, env, "user", "remove", "1"); code != 0 {
		t.Errorf("removing owner@localhost: %d %s", code, stderr)
	}
	if _, stderr, code := runPostern(t, dir, env, "user", "remove", fmt.Sprint(ann.ID)); code == 0 || !strings.Contains(stderr, "last Owner") {
		t.Errorf("removing the last Owner: %d %s", code, stderr)
	}
	p.stop(t)
}
