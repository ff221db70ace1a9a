package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Binary is the postern binary the tests run as a subprocess.
type Binary struct {
	Path    string
	Version string // stamped into it with -ldflags "-X main.version=…"
}

// fallbackVersion is stamped into a binary built by BuildBinary.
const fallbackVersion = "v0.0.0-test"

// BuildBinary returns the one postern binary every test that runs it
// shares: the one make test built (POSTERN_BIN, stamped with
// POSTERN_BIN_VERSION), the binary users run, or, under a bare go test,
// one built now, which cleanup removes. A test package calls it once, in
// TestMain.
func BuildBinary() (bin Binary, cleanup func(), err error) {
	if path := os.Getenv("POSTERN_BIN"); path != "" {
		if !filepath.IsAbs(path) {
			return Binary{}, nil, fmt.Errorf("POSTERN_BIN=%s: want an absolute path", path)
		}
		return Binary{Path: path, Version: os.Getenv("POSTERN_BIN_VERSION")}, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "postern-bin-")
	if err != nil {
		return Binary{}, nil, err
	}
	bin = Binary{Path: filepath.Join(dir, "postern"), Version: fallbackVersion}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin.Path, "-ldflags", "-X main.version="+bin.Version, "github.com/postern/postern/cmd/postern")
	if out, err := build.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return Binary{}, nil, fmt.Errorf("building postern: %v\n%s", err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
