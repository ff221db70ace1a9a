package testutil

import (
	"os/exec"
	"testing"
)

// fakeTB records how a test ended, without ending this one.
type fakeTB struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(string, ...any)          { f.failed = true }
func (f *fakeTB) Skipf(string, ...any)           { f.skipped = true }
func (f *fakeTB) Logf(format string, a ...any)   {}
func (f *fakeTB) Errorf(format string, a ...any) { f.failed = true }

// A missing tool fails the test under CI=true and skips it elsewhere; a
// tool that is there is found either way.
func TestNeedTool(t *testing.T) {
	const missing = "postern-no-such-tool"
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		f := &fakeTB{}
		NeedTool(f, missing)
		if ci == "true" && (!f.failed || f.skipped) || ci == "" && (f.failed || !f.skipped) {
			t.Errorf("CI=%q, missing tool: failed %v, skipped %v", ci, f.failed, f.skipped)
		}
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Fatal(err)
		}
		f = &fakeTB{}
		if got := NeedTool(f, "sh"); got != sh || f.failed || f.skipped {
			t.Errorf("CI=%q, sh: %q, failed %v, skipped %v", ci, got, f.failed, f.skipped)
		}
	}
}
