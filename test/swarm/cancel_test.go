package swarm

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

// cancelRunning is TestSwarm's "cancel of running tasks": a job whose
// tasks run as swarm services, each having printed its lines and written a
// partial output, is cancelled. Every task ends cancelled, the nodes' own
// `docker` CLI shows none of its containers, volumes or services, each
// line printed before the cancel is in its log once, and each task's
// partial output and log copy are in the bucket.
func cancelRunning(t *testing.T, c *swarmCluster) {
	const tasks, lines = 3, 5
	if _, err := exec.LookPath("docker"); err != nil {
		testutil.NeedSystem(t, "the docker CLI", err)
	}
	// The task ignores SIGTERM (sh as a container's pid 1 has no handler)
	// and never ends by itself: only the cancel's SIGKILL ends it.
	code := codeDir(t, fmt.Sprintf(`for i in $(seq 1 %d); do echo "c$CLOUDML_TASK_INDEX line $i"; done
echo "partial of task $CLOUDML_TASK_INDEX" > "$CLOUDML_OUTPUT_DIR/partial.txt"
echo "c$CLOUDML_TASK_INDEX waiting"
while [ ! -e /go ]; do sleep 0.1; done
echo "c$CLOUDML_TASK_INDEX not cancelled"
`, lines))
	start := time.Now()
	job := strings.TrimSpace(c.mustClient("submit", "--name", "cancelme", "--image", busybox, "--code", code,
		"--param", "i=0,1,2", "--", "sh", "task.sh"))
	c.waitTasksWaiting(t, job, tasks, 90*time.Second, func(i int) string { return fmt.Sprintf("[%d] c%d waiting\n", i, i) })
	// The guard: the cancel lands on running containers (the tasks cannot
	// end by themselves), one per task, as the nodes' daemons see them.
	n := 0
	for _, ids := range c.jobContainers(job) {
		n += len(ids)
	}
	if n != tasks {
		t.Fatalf("before the cancel: %d running containers of %s on the nodes, want %d", n, job, tasks)
	}
	cancelled := time.Now()
	c.mustClient("cancel", job)
	// The job shows cancelled at once; its tasks end as their agents stop
	// them (after the kill grace: they ignore SIGTERM) and report.
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "the job and every task cancelled", func() error {
		state, ts := c.status(job)
		if state != "JOB_STATE_CANCELLED" || len(ts) != tasks {
			return fmt.Errorf("job %s, tasks %+v", state, ts)
		}
		for _, tk := range ts {
			if tk.State != "TASK_STATE_CANCELLED" {
				return fmt.Errorf("task %d: %s at attempt %d", tk.Index, tk.State, tk.Attempt)
			}
		}
		return nil
	})
	t.Logf("from the cancel to every task's end: %s", time.Since(cancelled).Round(100*time.Millisecond))
	_, ts := c.status(job)
	for _, tk := range ts {
		if tk.Attempt != 1 {
			t.Errorf("task %d: cancelled at attempt %d (%s); want attempt 1", tk.Index, tk.Attempt, tk.Reason)
		}
	}

	// The containers, output volumes and services go once the job is over;
	// the agents and the swarm remove them after the last report.
	mgr := c.managerIndex(t)
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "no container, volume or service of the job left", func() error {
		var left []string
		for i := 0; i < c.nodes; i++ {
			for _, what := range [][]string{{"ps", "-a"}, {"volume", "ls"}} {
				if ids := dockerCLI(t, c, i, append(what, "-q", "--filter", "label=cloudml.job="+job)...); len(ids) > 0 {
					left = append(left, fmt.Sprintf("node %d docker %s: %v", i, what[0], ids))
				}
			}
		}
		if ids := dockerCLI(t, c, mgr, "service", "ls", "-q", "--filter", "label=cloudml.job="+job); len(ids) > 0 {
			left = append(left, fmt.Sprintf("manager (node %d) docker service ls: %v", mgr, ids))
		}
		if len(left) > 0 {
			return fmt.Errorf("%s", strings.Join(left, "; "))
		}
		return nil
	})
	t.Logf("from submit to everything removed: %s", time.Since(start).Round(100*time.Millisecond))

	logs := c.mustClient("-o", "json", "logs", job)
	for i := 0; i < tasks; i++ {
		want := []string{fmt.Sprintf("c%d waiting", i)}
		for k := 1; k <= lines; k++ {
			want = append(want, fmt.Sprintf("c%d line %d", i, k))
		}
		checkLinesOnce(t, logs, i, want)
		prefix := fmt.Sprintf("runs/results/%s/%d/1/", job, i)
		if obj, err := c.gcs.GetObject("cloudml-swarm", prefix+"partial.txt"); err != nil || string(obj.Content) != fmt.Sprintf("partial of task %d\n", i) {
			t.Errorf("task %d: partial output in the bucket: %q, %v", i, obj.Content, err)
		}
		if obj, err := c.gcs.GetObject("cloudml-swarm", prefix+"logs/stdout.log"); err != nil || !strings.Contains(string(obj.Content), strings.Join(want[1:], "\n")+"\n"+want[0]+"\n") {
			t.Errorf("task %d: log copy in the bucket: %q, %v", i, obj.Content, err)
		}
		var m struct{ State string }
		if obj, err := c.gcs.GetObject("cloudml-swarm", prefix+"manifest.json"); err != nil || json.Unmarshal(obj.Content, &m) != nil || m.State != "CANCELLED" {
			t.Errorf("task %d: manifest in the bucket says %q (%v)", i, m.State, err)
		}
	}
}

// dockerCLI runs the docker CLI against node i's daemon and returns the
// lines it printed.
func dockerCLI(t *testing.T, c *swarmCluster, i int, args ...string) []string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"-H", netns.DockerHost(c.name, i)}, args...)...).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("docker %s on node %d: %v\n%s", strings.Join(args, " "), i, err, msg)
	}
	return strings.Fields(string(out))
}

// checkLinesOnce asserts that task's log (logs -o json) holds each of want
// once, and no other line.
func checkLinesOnce(t *testing.T, out string, task int, want []string) {
	t.Helper()
	seen := map[string]int{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var l struct {
			Task int
			Line string
		}
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("logs -o json: %v", err)
		}
		if l.Task == task {
			seen[l.Line]++
		}
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("task %d: line %q arrived %d times, want once", task, w, seen[w])
		}
		delete(seen, w)
	}
	for line, n := range seen {
		t.Errorf("task %d: unexpected line %q (%d times)", task, line, n)
	}
}
