package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// plain is the runtime with nothing to hide, as the agent's own user.
func plain(t *testing.T) Runtime {
	t.Helper()
	r, err := NewProcess(ProcessConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func start(t *testing.T, dir string, cmd ...string) (stdout, stderr string, code int, p Process) {
	t.Helper()
	p, err := plain(t).Start(context.Background(), Spec{Command: cmd, Dir: dir, Env: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = collect(t, p)
	return stdout, stderr, code, p
}

func collect(t *testing.T, p Process) (string, string, int) {
	t.Helper()
	out, errb, code, err := collectErr(p)
	if err != nil {
		t.Fatal(err)
	}
	return out, errb, code
}

// collectErr is collect without t, for use off the test goroutine.
func collectErr(p Process) (string, string, int, error) {
	var out, errb []byte
	var wg sync.WaitGroup
	wg.Go(func() { out, _ = io.ReadAll(p.Stdout()) })
	wg.Go(func() { errb, _ = io.ReadAll(p.Stderr()) })
	wg.Wait()
	code, err := p.Wait()
	return string(out), string(errb), code, err
}

func TestProcessRunsInDirWithEnv(t *testing.T) {
	dir := t.TempDir()
	p, err := plain(t).Start(context.Background(), Spec{
		Command: []string{"sh", "-c", "pwd; echo $FOO; echo bad >&2; exit 3"},
		Dir:     dir, Env: append(os.Environ(), "FOO=bar"),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, errs, code := collect(t, p)
	real, _ := filepath.EvalSymlinks(dir)
	if want := real + "\nbar\n"; out != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	if errs != "bad\n" || code != 3 {
		t.Errorf("stderr = %q, code = %d; want \"bad\\n\", 3", errs, code)
	}
}

func TestProcessResolvesCommands(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho from script\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, _, code, _ := start(t, dir, "./run.sh"); out != "from script\n" || code != 0 {
		t.Errorf("./run.sh: stdout %q code %d", out, code)
	}
	tests := []struct {
		cmd, want string
	}{
		{"no-such-cmd-xyz", `command "no-such-cmd-xyz" not found (not on PATH and not in the code directory)`},
		{"./missing.sh", `command "./missing.sh" not found (not on PATH and not in the code directory)`},
		{"run.sh", `command "run.sh" is not on PATH but is in the code directory: use "./run.sh"`},
	}
	for _, tt := range tests {
		_, err := plain(t).Start(context.Background(), Spec{Command: []string{tt.cmd}, Dir: dir, Env: os.Environ()})
		if !errors.Is(err, ErrCommandNotFound) {
			t.Errorf("%s: err = %v, want ErrCommandNotFound", tt.cmd, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("%s: err = %q, want %q", tt.cmd, err, tt.want)
		}
	}
}

func TestProcessSignalReachesTheGroup(t *testing.T) {
	p, err := plain(t).Start(context.Background(), Spec{
		// The child sleeps in the background; only a group signal ends it.
		Command: []string{"sh", "-c", "sleep 600 & echo started; wait"},
		Dir:     t.TempDir(), Env: os.Environ(),
	})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if _, err := io.ReadFull(p.Stdout(), buf); err != nil || string(buf) != "started\n" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { _, _, code, err := collectErr(p); done <- result{code, err} }()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if code := r.code; code != -1 {
			t.Errorf("exit code = %d, want -1 (killed by signal)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("process group did not exit after SIGTERM")
	}
}

func TestProcessLeftoverChildrenDoNotHoldOutput(t *testing.T) {
	// The leader exits at once; its background child keeps stdout open.
	out, _, code, _ := start(t, t.TempDir(), "sh", "-c", "sleep 600 & echo bye")
	if strings.TrimSpace(out) != "bye" || code != 0 {
		t.Errorf("stdout %q code %d", out, code)
	}
}
