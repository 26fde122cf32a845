package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// writeCode makes a small code directory with a cloudml.yaml.
func writeCode(t *testing.T, yaml string) (dir, spec string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("echo task $CLOUDML_TASK_INDEX of $CLOUDML_TASK_COUNT x=$CLOUDML_PARAM_X\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec = filepath.Join(dir, "cloudml.yaml")
	if err := os.WriteFile(spec, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, spec
}

// TestBadInput runs each kind of bad input against one real cluster and
// checks the error is clear and the store stays consistent (list still
// works and shows only the jobs that were accepted).
func TestBadInput(t *testing.T) {
	testutil.Short(t)
	c := startCluster(t, clusterOpts{nodes: 1, slots: 2})

	t.Run("unknown field names field and line", func(t *testing.T) {
		_, spec := writeCode(t, "name: bad\ncode: .\ncommand: [sh, run.sh]\nparalelism: 2\n")
		r := c.client("submit", "-f", spec)
		if r.Code != 2 || !strings.Contains(r.Stderr, ":4:") || !strings.Contains(r.Stderr, "paralelism") {
			t.Errorf("exit %d, stderr %q; want exit 2 naming line 4 and the field", r.Code, r.Stderr)
		}
	})
	t.Run("zero tasks", func(t *testing.T) {
		_, spec := writeCode(t, "name: empty\ncode: .\ncommand: [sh, run.sh]\nsweep:\n  grid:\n    x: []\n")
		r := c.client("submit", "-f", spec)
		if r.Code != 2 || !strings.Contains(r.Stderr, "zero tasks") {
			t.Errorf("exit %d, stderr %q; want exit 2 and 'zero tasks'", r.Code, r.Stderr)
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		for _, cmd := range [][]string{{"status", "nope-123456"}, {"logs", "nope-123456"}, {"cancel", "nope-123456"}, {"results", "nope-123456"}} {
			r := c.client(cmd...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "nope-123456") || !strings.Contains(r.Stderr, "not found") {
				t.Errorf("%v: exit %d, stderr %q; want exit 1 and 'not found'", cmd, r.Code, r.Stderr)
			}
		}
	})
	t.Run("command not found", func(t *testing.T) {
		dir, _ := writeCode(t, "")
		job := strings.TrimSpace(c.mustClient("submit", "--name", "nocmd", "--code", dir, "--", "no-such-program-xyz"))
		r := c.client("logs", "-f", job)
		if r.Code != 3 {
			t.Errorf("logs -f exit %d, want 3 (job failed)", r.Code)
		}
		st := c.mustClient("status", job)
		if !strings.Contains(st, "no-such-program-xyz") || !strings.Contains(st, "not found") {
			t.Errorf("status does not say the command was not found:\n%s", st)
		}
	})
	t.Run("missing bucket object", func(t *testing.T) {
		job := strings.TrimSpace(c.mustClient("submit", "--name", "nocode", "--code", "file://"+filepath.Join(t.TempDir(), "nothing"), "--", "sh", "run.sh"))
		r := c.client("logs", "-f", job)
		st := c.mustClient("status", job)
		if r.Code != 3 || !strings.Contains(st, "stage") {
			t.Errorf("logs -f exit %d; status should say staging failed:\n%s", r.Code, st)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin("cloudml-agent"), "--coordinator", c.addr, "--work-dir", t.TempDir())
		cmd.Env = append(os.Environ(), pki.JoinTokenEnv+"=wrong")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		// Exit 3 (systemd does not restart it) on its own, well before the deadline kills it (-1).
		if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "join token refused") {
			t.Errorf("agent with a wrong token: err %v, output %q; want exit 3 (do not restart) saying the join token was refused", err, out)
		}
	})
	t.Run("store consistent", func(t *testing.T) {
		var l struct {
			Jobs []struct {
				ID string `json:"id"`
			} `json:"jobs"`
		}
		c.jsonOf(&l, "list")
		if len(l.Jobs) != 2 {
			t.Errorf("list has %d jobs, want the 2 accepted ones: %+v", len(l.Jobs), l.Jobs)
		}
	})
}
