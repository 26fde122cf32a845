package octave

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "octave")
	env, err := Install(dir)
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	path := filepath.Join(dir, FileName)
	if diff := cmp.Diff([]string{"OCTAVE_SITE_INITFILE=" + path}, env); diff != "" {
		t.Errorf("Install env (-want +got):\n%s", diff)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, InitFile()) {
		t.Errorf("installed file differs from InitFile")
	}

	// A second Install leaves the file alone.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Install(dir); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("second Install rewrote the file (stat %v, %v)", fi, err)
	}

	// A stale file is replaced, and so is one a crash left empty or torn
	// (Install does not fsync it); no temporary file is left behind.
	for _, stale := range []string{"% stale\n", "", string(InitFile()[:len(InitFile())/2])} {
		if err := os.WriteFile(path, []byte(stale), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Install(dir); err != nil {
			t.Fatalf("Install over %q: %v", stale, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, InitFile()) {
			t.Errorf("file of %q not replaced", stale)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode of installed file: %v, %v; want 0644", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only %s", len(entries), FileName)
	}
}

func TestInstallRelativeDirGivesAbsolutePath(t *testing.T) {
	t.Chdir(t.TempDir())
	env, err := Install("rc")
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	path := strings.TrimPrefix(env[0], EnvVar+"=")
	if !filepath.IsAbs(path) {
		t.Errorf("Install env %q: path is not absolute", env[0])
	}
}

func TestInitFileIsACopy(t *testing.T) {
	a := InitFile()
	if !bytes.Contains(a, []byte("defaultfigurecloserequestfcn")) {
		t.Fatalf("InitFile does not look like the startup file")
	}
	a[0] = 'X'
	if InitFile()[0] == 'X' {
		t.Errorf("InitFile returned the embedded slice itself")
	}
}

func TestEnv(t *testing.T) {
	got := Env("/cloudml/octave/octaverc")
	want := []string{"OCTAVE_SITE_INITFILE=/cloudml/octave/octaverc"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Env (-want +got):\n%s", diff)
	}
}
