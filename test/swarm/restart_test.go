package swarm

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

// markerScript prints attempt 1's first lines, then holds attempt 1 until
// the test gives its container the marker file /go (giveMarker); later
// attempts do not wait.
const markerScript = `echo "run $CLOUDML_TASK_INDEX attempt $CLOUDML_ATTEMPT"
if [ "$CLOUDML_ATTEMPT" = 1 ]; then
  while [ ! -e /go ]; do sleep 0.1; done
fi
echo "task $CLOUDML_TASK_INDEX done"
`

// jobContainers lists the running containers of job, by node.
func (c *swarmCluster) jobContainers(job string) map[int][]string {
	c.t.Helper()
	out := map[int][]string{}
	for i := 0; i < c.nodes; i++ {
		list, err := c.docker(i).ContainerList(context.Background(), container.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", "cloudml.job="+job), filters.Arg("status", "running"))})
		if err != nil {
			continue // a stopped daemon runs none
		}
		for _, ct := range list {
			out[i] = append(out[i], ct.ID)
		}
	}
	return out
}

// isManager reports whether node i's daemon manages the swarm.
func (c *swarmCluster) isManager(i int) bool {
	info, err := c.docker(i).Info(context.Background())
	return err == nil && info.Swarm.ControlAvailable
}

// giveMarker puts the file /go into a container of node i, which lets
// markerScript's attempt 1 finish.
func (c *swarmCluster) giveMarker(t *testing.T, node int, id string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "go", Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.docker(node).CopyToContainer(context.Background(), id, "/", &buf, container.CopyToContainerOptions{}); err != nil {
		t.Fatalf("give the marker to container %s on node %d: %v", id, node, err)
	}
}

// clientWith runs the client with extra environment.
func (c *swarmCluster) clientWith(env []string, args ...string) testutil.ClientResult {
	c.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: c.addr, Env: append(append(os.Environ(), c.config), env...)}.Run(c.t, args...)
}

// swarmNodeIDs maps node ids to their swarm node ids, as the coordinator
// shows them.
func (c *swarmCluster) swarmNodeIDs() map[string]string {
	m := map[string]string{}
	for _, n := range c.listNodes() {
		m[n.ID] = n.SwarmNodeID
	}
	return m
}

// coordinatorRestart is TestSwarm's "coordinator killed mid-sweep": the
// coordinator is killed with SIGKILL while every task runs as a swarm
// service, and started again on the same state. On the netns provider its
// daemons and agents die with it, and the new ones come up outside any
// swarm: the coordinator must form the swarm again from what the agents
// report, re-run the lost attempts without using a retry (the job allows
// none), and keep each line it stored once.
func coordinatorRestart(t *testing.T, c *swarmCluster) {
	const tasks, lines = 3, 200
	// Attempt 1 never ends by itself: only losing it (the daemons go with
	// the coordinator) lets the job complete, by attempt 2.
	code := codeDir(t, fmt.Sprintf(`for i in $(seq 1 %d); do echo "a$CLOUDML_ATTEMPT line $i"; done
if [ "$CLOUDML_ATTEMPT" = 1 ]; then echo "a1 waiting"; sleep 3600; fi
echo "a$CLOUDML_ATTEMPT done"
`, lines))
	// The image goes to the coordinator (from node 0's daemon), which keeps
	// it in its state dir: the daemons after the restart have no image.
	sub := c.clientWith([]string{"DOCKER_HOST=" + netns.DockerHost(c.name, 0)}, "submit", "--name", "restart", "--image", busybox,
		"--code", code, "--retries", "0", "--param", "i=0,1,2", "--", "sh", "task.sh")
	if sub.Code != 0 {
		t.Fatalf("submit: exit %d\n%s", sub.Code, sub.Stderr)
	}
	job := strings.TrimSpace(sub.Stdout)
	c.waitTasksWaiting(t, job, tasks, 120*time.Second, func(i int) string { return fmt.Sprintf("[%d] a1 waiting\n", i) })
	before := c.swarmNodeIDs()
	// The guard: the kill lands while the job runs, with its tasks running
	// (checked just above; attempt 1 cannot end by itself).
	if state, ts := c.status(job); state != "JOB_STATE_RUNNING" || len(ts) != tasks || ts[0].State != "TASK_STATE_RUNNING" {
		t.Fatalf("before the kill: job %s, tasks %+v; want it running", state, ts)
	}
	killed := time.Now()
	c.killCoordinator(t)
	c.startCoordinator()
	c.waitServing(t)

	r := c.client("-o", "json", "logs", "-f", job)
	took := time.Since(killed)
	state, ts := c.status(job)
	if r.Code != 0 || state != "JOB_STATE_SUCCEEDED" {
		t.Fatalf("after the restart: logs -f exit %d, job %s, tasks %+v\n%s", r.Code, state, ts, r.Stderr)
	}
	t.Logf("from the kill to the job's end: %s", took.Round(100*time.Millisecond))
	for _, tk := range ts {
		if tk.State != "TASK_STATE_SUCCEEDED" || tk.Attempt < 2 {
			t.Errorf("task %d: %s at attempt %d; want succeeded by an attempt after the restart", tk.Index, tk.State, tk.Attempt)
		}
		checkOnce(t, r.Stdout, tk.Index, tk.Attempt, lines)
	}
	c.waitSwarm()
	after := c.swarmNodeIDs()
	for id, old := range before {
		if after[id] == "" || after[id] == old {
			t.Errorf("node %s: swarm node %q after the restart, %q before; want a new swarm's", id, after[id], old)
		}
	}
}

// checkOnce asserts that task's log (logs -o json) holds each line of
// each attempt once, attempt 1's lines and waiting line, and the last
// attempt's lines and final line.
func checkOnce(t *testing.T, out string, task, last, lines int) {
	t.Helper()
	seen := map[string]int{}
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var l struct {
			Task, Attempt int
			Line          string
		}
		if err := dec.Decode(&l); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("logs -o json: %v", err)
		}
		if l.Task != task {
			continue
		}
		if !strings.HasPrefix(l.Line, fmt.Sprintf("a%d ", l.Attempt)) {
			t.Errorf("task %d: line %q in the log of attempt %d", task, l.Line, l.Attempt)
		}
		seen[l.Line]++
	}
	for line, n := range seen {
		if n != 1 {
			t.Errorf("task %d: line %q arrived %d times", task, line, n)
		}
	}
	want := []string{"a1 waiting", fmt.Sprintf("a%d done", last)}
	for i := 1; i <= lines; i++ {
		want = append(want, fmt.Sprintf("a1 line %d", i), fmt.Sprintf("a%d line %d", last, i))
	}
	for _, w := range want {
		if seen[w] == 0 {
			t.Errorf("task %d: line %q is missing", task, w)
			return
		}
	}
}
