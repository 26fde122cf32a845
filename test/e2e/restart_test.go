package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLogsFollowSurvivesCoordinatorRestart follows a job with logs -f while
// the coordinator restarts under it: the client reconnects, resumes after
// the last line it printed, and exits with the job's status.
func TestLogsFollowSurvivesCoordinatorRestart(t *testing.T) {
	c := startCluster(t, clusterOpts{nodes: 1})
	code := t.TempDir()
	// Attempt 1 prints 200 lines and waits; the restart loses it, and
	// attempt 2 prints 400 lines and ends.
	script := `seq 1 200; if [ "$CLOUDML_ATTEMPT" = 1 ]; then sleep 60; fi; seq 201 400` + "\n"
	if err := os.WriteFile(filepath.Join(code, "task.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	job := strings.TrimSpace(c.mustClient("submit", "--name", "restart", "--code", code, "--", "sh", "task.sh"))

	follow := exec.Command(bin("cloudml-client"), "--coordinator", c.addr, "logs", "-f", job)
	follow.Env = c.env
	var out, errOut lockedBuffer
	follow.Stdout, follow.Stderr = &out, &errOut
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	// The restart comes once the follower printed attempt 1's lines: on a
	// busy machine it may not have reached the coordinator before, and a
	// first call that finds no coordinator is an error, not a reconnect.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "[0] 200\n") {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f did not print attempt 1's 200 lines\nstderr:\n%s", errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	c.restart(1)

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("logs -f across the restart: %v\nstdout:\n%.2000s\nstderr:\n%s", err, out.String(), errOut.String())
		}
	case <-time.After(60 * time.Second):
		follow.Process.Kill()
		t.Fatalf("logs -f did not end after the restart\nstderr:\n%s", errOut.String())
	}
	// Attempt 1's lines once each (none printed again on reconnecting),
	// then all of attempt 2's.
	var want strings.Builder
	for i := 1; i <= 200; i++ {
		fmt.Fprintf(&want, "[0] %d\n", i)
	}
	for i := 1; i <= 400; i++ {
		fmt.Fprintf(&want, "[0#2] %d\n", i)
	}
	if got := out.String(); got != want.String() {
		t.Errorf("logs -f printed %d lines, want attempt 1's 200 then attempt 2's 400, once each:\n%.600s", strings.Count(got, "\n"), got)
	}
	if !strings.Contains(errOut.String(), "reconnecting") {
		t.Errorf("stderr does not say it reconnected: %q", errOut.String())
	}
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
