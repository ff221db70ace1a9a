// Package testutil holds what tests across packages share to reach the
// real parts they need.
package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every tool a
// test needs is installed by .ci/run: a missing one is a failure there,
// never a skip, so that a CI machine without it cannot look green.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable ends a test that cannot get a real part it needs: it fails
// in CI and skips elsewhere, saying why either way.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and "+format, args...)
		return
	}
	t.Skipf(format, args...)
}

// NeedTool returns the path of an external program the test needs, or
// ends the test by Unavailable when it is not installed.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed: %v", name, err)
	}
	return path
}
