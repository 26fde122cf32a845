package lint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
)

// cleanModule is a one-file module that is tidy and has no staticcheck
// finding, so that each test shows its target passes before the mistake.
var cleanModule = map[string]string{
	"go.mod": "module example.com/m\n\ngo 1.26\n",
	"m.go":   "// Package m is a module for the lint tests.\npackage m\n\n// Same reports whether s equals t.\nfunc Same(s, t string) bool { return s == t }\n",
}

// tinyModule writes cleanModule into a temporary directory.
func tinyModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range cleanModule {
		writeFile(t, filepath.Join(dir, name), data)
	}
	return dir
}

// runMake runs the repository Makefile's targets on the module in dir, as
// `make lint` runs them on the repository.
func runMake(t *testing.T, dir string, targets ...string) (string, error) {
	t.Helper()
	testutil.NeedBinary(t, "make")
	args := append([]string{"--no-print-directory", "-C", dir, "-f", filepath.Join(repoRoot(), "Makefile")}, targets...)
	cmd := exec.Command("make", args...)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestCheckTidyFailsOnUntidyGoMod: a require that no package imports is
// what `go mod tidy` would drop, so check-tidy (and make lint) fails.
func TestCheckTidyFailsOnUntidyGoMod(t *testing.T) {
	dir := tinyModule(t)
	if out, err := runMake(t, dir, "check-tidy"); err != nil {
		t.Fatalf("check-tidy on a tidy module: %v\n%s", err, out)
	}
	// A local module keeps the test off the network.
	writeFile(t, filepath.Join(dir, "dep", "go.mod"), "module example.com/dep\n\ngo 1.26\n")
	writeFile(t, filepath.Join(dir, "dep", "dep.go"), "// Package dep is not imported.\npackage dep\n")
	writeFile(t, filepath.Join(dir, "go.mod"), cleanModule["go.mod"]+"\nrequire example.com/dep v0.0.0\n\nreplace example.com/dep => ./dep\n")
	out, err := runMake(t, dir, "check-tidy")
	if err == nil {
		t.Fatalf("check-tidy passed on an untidy go.mod:\n%s", out)
	}
	for _, want := range []string{"-require example.com/dep v0.0.0", "go mod tidy would change ./go.mod"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-tidy output lacks %q:\n%s", want, out)
		}
	}
}

// TestStaticcheckTargetFailsOnAFinding runs the pinned staticcheck through
// the Makefile on a module with one finding (SA4000).
func TestStaticcheckTargetFailsOnAFinding(t *testing.T) {
	testutil.Short(t) // the first run builds staticcheck (about 2 minutes)
	dir := tinyModule(t)
	if out, err := runMake(t, dir, "staticcheck"); err != nil {
		t.Fatalf("staticcheck on a clean module: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "m.go"), strings.Replace(cleanModule["m.go"], "s == t", "s == s", 1))
	out, err := runMake(t, dir, "staticcheck")
	if err == nil {
		t.Fatalf("staticcheck passed on a finding:\n%s", out)
	}
	if want := "m.go:5:38: identical expressions"; !strings.Contains(out, want) || !strings.Contains(out, "SA4000") {
		t.Errorf("staticcheck output lacks %q (SA4000):\n%s", want, out)
	}
}
