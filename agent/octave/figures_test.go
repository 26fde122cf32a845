package octave

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

// octaveRun is one octave-cli run of a script with the startup file.
type octaveRun struct {
	code   int
	out    string // CLOUDML_OUTPUT_DIR
	stdout string
	stderr string
}

// runOctave runs script with octave-cli, the startup file installed, HOME
// in a fresh directory (holding homeRC as ~/.octaverc when set), no display
// and CLOUDML_OUTPUT_DIR set unless noOutputDir.
func runOctave(t *testing.T, script, homeRC string, noOutputDir bool) octaveRun {
	t.Helper()
	bin := testutil.NeedBinary(t, "octave-cli")
	testutil.NeedBinary(t, "gnuplot")
	dir := t.TempDir()
	env, err := Install(filepath.Join(dir, "rc"))
	if err != nil {
		t.Fatalf("Install: %v", err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if homeRC != "" {
		if err := os.WriteFile(filepath.Join(home, ".octaverc"), []byte(homeRC), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "model.m"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	r := octaveRun{out: filepath.Join(dir, "out")}
	env = append(env, "HOME="+home)
	if !noOutputDir {
		env = append(env, "CLOUDML_OUTPUT_DIR="+r.out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "model.m") // as users run it: no --no-history
	cmd.Dir = work
	cmd.Env = append(baseEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("octave-cli: %v", err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	t.Logf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	return r
}

// baseEnv is the test's environment without what runOctave sets itself
// and without a display, as on a node.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case EnvVar, "OCTAVE_INITFILE", "CLOUDML_OUTPUT_DIR", "HOME", "DISPLAY", "WAYLAND_DISPLAY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// pngs lists the files in dir, checking that each is a PNG of a real size.
func pngs(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: no PNG signature", e.Name())
			continue
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
			continue
		}
		if cfg.Width <= 100 || cfg.Height <= 100 {
			t.Errorf("%s: %dx%d, want more than 100x100", e.Name(), cfg.Width, cfg.Height)
		}
	}
	sort.Strings(names)
	return names
}

func TestFigures(t *testing.T) {
	cases := []struct {
		name     string
		script   string
		wantCode int
		want     []string
	}{
		{
			name:   "two figures at normal end",
			script: "x = linspace(0, 2*pi); figure; plot(x, sin(x)); title('sin'); figure; surf(peaks(20));\n",
			want:   []string{"figure-1.png", "figure-2.png"},
		},
		{
			name:     "error after plotting",
			script:   "figure; plot(1:10);\nerror('model:broken', 'broken model');\n",
			wantCode: 1,
			want:     []string{"figure-1.png"},
		},
		{
			name:     "exit status kept",
			script:   "figure(4); plot(1:10);\nexit(3);\n",
			wantCode: 3,
			want:     []string{"figure-4.png"},
		},
		{
			name:   "no figures",
			script: "disp(1 + 1)\n",
		},
		{
			name:   "clear all, and figures the script closed are not saved",
			script: "clear all; close all;\nfigure; plot(1:3); figure; plot(3:-1:1); figure; bar(1:3);\nclose(1); clear all;\n",
			want:   []string{"figure-2.png", "figure-3.png"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runOctave(t, tc.script, "", false)
			if r.code != tc.wantCode {
				t.Errorf("exit code %d, want %d", r.code, tc.wantCode)
			}
			if diff := cmp.Diff(tc.want, pngs(t, r.out)); diff != "" {
				t.Errorf("files in CLOUDML_OUTPUT_DIR (-want +got):\n%s", diff)
			}
			if strings.Contains(r.stdout, "|---") {
				t.Errorf("a figure was drawn on the terminal: figures are not invisible")
			}
			if strings.Contains(r.stderr, "cloudml:") {
				t.Errorf("startup file reported a problem: %s", r.stderr)
			}
			// Octave 7 cannot save its history under a HOME without
			// ~/.local/share/octave and says so at every exit.
			if strings.Contains(r.stderr, "preparing to exit") {
				t.Errorf("octave complained at exit: %s", r.stderr)
			}
		})
	}

	t.Run("no output dir", func(t *testing.T) {
		t.Parallel()
		r := runOctave(t, "figure; plot(1:10);\n", "", true)
		if r.code != 0 {
			t.Errorf("exit code %d, want 0", r.code)
		}
		if got := pngs(t, r.out); got != nil {
			t.Errorf("files written with no CLOUDML_OUTPUT_DIR: %v", got)
		}
		if strings.Contains(r.stderr, "cloudml:") {
			t.Errorf("startup file reported a problem: %s", r.stderr)
		}
	})

	t.Run("site and user startup files still run", func(t *testing.T) {
		t.Parallel()
		script := "printf('hook=%s user=%d\\n', missing_component_hook(), user_rc_ran);\nwho\n"
		r := runOctave(t, script, "user_rc_ran = 7;\n", false)
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		// The hook is whatever the site file sets (Debian sets its own),
		// as octave-cli shows without CloudML's file.
		cmd := exec.Command(testutil.NeedBinary(t, "octave-cli"), "--no-init-file", "--eval", "disp(missing_component_hook())")
		cmd.Env = baseEnv()
		base, err := cmd.Output()
		if err != nil {
			t.Fatalf("octave-cli without the startup file: %v", err)
		}
		want := "hook=" + strings.TrimSpace(string(base)) + " user=7\n"
		if !strings.HasPrefix(r.stdout, want) {
			t.Errorf("stdout %q, want it to start with %q", r.stdout, want)
		}
		// The startup file leaves no variable behind in the workspace.
		if strings.Contains(r.stdout, "__cloudml") || strings.Contains(r.stdout, "ans") {
			t.Errorf("startup file left variables: %s", r.stdout)
		}
	})
}
