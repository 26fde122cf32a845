package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusListsAPageOfTasks: against a real coordinator, a 5-task job
// (no nodes, so every task is pending) listed with --limit and --state,
// in a table and as JSON.
func TestStatusListsAPageOfTasks(t *testing.T) {
	p := startCluster(t, 0)
	code := t.TempDir()
	c, job, stderr := p.run(t, "submit", "--code", "file://"+code, "--param", "i=1,2,3,4,5", "--", "true")
	job = strings.TrimSpace(job)
	if c != ExitOK {
		t.Fatalf("submit: exit %d: %s", c, stderr)
	}
	rows := func(out string) int { // table rows after the TASK header
		_, tasks, _ := strings.Cut(out, "TASK ")
		n := 0
		for _, l := range strings.Split(tasks, "\n")[1:] {
			if strings.Contains(l, "pending") {
				n++
			}
		}
		return n
	}

	c, out, stderr := p.run(t, "status", job, "--limit", "2")
	if c != ExitOK || rows(out) != 2 || !strings.Contains(out, "(2 of 5 tasks listed: --limit 0 lists every one") {
		t.Errorf("status --limit 2: exit %d, %d rows\n%s%s", c, rows(out), out, stderr)
	}
	c, out, _ = p.run(t, "status", job)
	if c != ExitOK || rows(out) != 5 || strings.Contains(out, "listed:") {
		t.Errorf("status (default limit 100): exit %d, %d rows, want all 5 and no note\n%s", c, rows(out), out)
	}
	c, out, _ = p.run(t, "status", job, "--state", "failed,running")
	if c != ExitOK || rows(out) != 0 || !strings.Contains(out, "pending=5") {
		t.Errorf("status --state failed,running: exit %d, %d rows, want none and the counts\n%s", c, rows(out), out)
	}
	c, _, stderr = p.run(t, "status", job, "--state", "done")
	if c != ExitUsage || !strings.Contains(stderr, `--state "done" is not a task state; use one of assigned, cancelled, failed, pending, running, staging, succeeded`) {
		t.Errorf("status --state done: exit %d, stderr %q", c, stderr)
	}
	if c, _, stderr = p.run(t, "status", job, "--limit", "-1"); c != ExitUsage || !strings.Contains(stderr, "--limit must be 0") {
		t.Errorf("status --limit -1: exit %d, stderr %q", c, stderr)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{{[]string{"-o", "json"}, 5}, {[]string{"-o", "json", "--limit", "2"}, 2}, {[]string{"-o", "json", "--state", "pending", "--limit", "0"}, 5}} {
		c, out, stderr := p.run(t, append([]string{"status", job}, tc.args...)...)
		var got struct{ Tasks []json.RawMessage }
		if err := json.Unmarshal([]byte(out), &got); c != ExitOK || err != nil || len(got.Tasks) != tc.want {
			t.Errorf("status %v: exit %d, %d tasks (%v), want %d\n%s", tc.args, c, len(got.Tasks), err, tc.want, stderr)
		}
	}
}
