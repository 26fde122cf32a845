// Package testutil holds helpers shared by CloudML's tests: a logger that
// writes through t.Log, and the rule that a test needing a real system skips
// when it is missing, except under CI (CI=true), where it fails.
package testutil

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Logger returns an hclog logger that writes through t.Log.
func Logger(t testing.TB) hclog.Logger {
	t.Helper()
	return hclog.New(&hclog.LoggerOptions{
		Name:   t.Name(),
		Level:  hclog.Debug,
		Output: tWriter{t},
	})
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = tWriter{}

// InCI reports whether the tests run under CI, where nothing may skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// NeedSystem skips the test with a clear message, or fails it under CI,
// when a system it needs is missing.
func NeedSystem(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("%s is required under CI=true but missing: %v", what, err)
	}
	t.Skipf("skipping: %s is missing (%v); install it or run .ci/run", what, err)
}

// NeedBinary is NeedSystem for a program on PATH; it returns its path.
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	NeedSystem(t, name, err)
	return p
}

// Short skips a slow real-system test under -short (never under CI).
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() && !InCI() {
		t.Skip("skipping slow real-system test in -short mode")
	}
}
