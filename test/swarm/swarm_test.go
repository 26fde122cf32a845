package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

const (
	busybox     = "cloudml/busybox:test"
	octaveImage = "cloudml/octave:7"
)

// hostImage returns the id of an image in the host's Docker daemon (where
// images/octave/build.sh puts it). The client runs on the host, so submit
// pushes it to the coordinator and the nodes fetch it through the mesh.
func hostImage(t *testing.T, ref string) string {
	t.Helper()
	host, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	var id string
	if err == nil {
		defer host.Close()
		var inspect image.InspectResponse
		inspect, err = host.ImageInspect(context.Background(), ref)
		id = inspect.ID
	}
	testutil.NeedSystem(t, "the "+ref+" image in the host's Docker daemon (run images/octave/build.sh)", err)
	return id
}

// imageOnNodes fails unless every node's Docker has ref with id.
func (c *swarmCluster) imageOnNodes(t *testing.T, ref, id string) {
	t.Helper()
	for i := 0; i < c.nodes; i++ {
		got, err := c.docker(i).ImageInspect(context.Background(), ref)
		if err != nil || got.ID != id {
			t.Errorf("node %d: image %s is %q (%v), want %s", i, ref, got.ID, err, id)
		}
	}
}

// managerIndex is the node whose agent is the swarm manager.
func (c *swarmCluster) managerIndex(t *testing.T) int {
	t.Helper()
	for _, n := range c.listNodes() {
		if n.SwarmRole == "manager" {
			i, _ := strconv.Atoi(n.Address[strings.LastIndex(n.Address, ".")+1:])
			return i - 10
		}
	}
	t.Fatalf("no manager among %+v", c.listNodes())
	return -1
}

// importBusybox puts the test image on every node, as `docker load` would.
func (c *swarmCluster) importBusybox() {
	c.t.Helper()
	for i := 0; i < c.nodes; i++ {
		c.importBusyboxAs(i, busybox)
	}
}

// importBusyboxAs imports the busybox rootfs as ref on node i only.
func (c *swarmCluster) importBusyboxAs(i int, ref string) {
	c.t.Helper()
	rootfs, err := netns.BusyboxRootfs()
	testutil.NeedSystem(c.t, "busybox-static", err)
	rc, err := c.docker(i).ImageImport(context.Background(), image.ImportSource{Source: bytes.NewReader(rootfs), SourceName: "-"},
		ref, image.ImportOptions{Changes: []string{"ENV PATH=/bin"}})
	if err != nil {
		c.t.Fatalf("import %s on node %d: %v", ref, i, err)
	}
	io.Copy(io.Discard, rc)
	rc.Close()
}

type taskJSON struct {
	Index   int    `json:"index"`
	State   string `json:"state"`
	NodeID  string `json:"nodeId"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason"`
	Exit    int    `json:"exitCode"`
}

func (c *swarmCluster) status(job string) (state string, tasks []taskJSON) {
	c.t.Helper()
	var j struct {
		State string     `json:"state"`
		Tasks []taskJSON `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(c.mustClient("-o", "json", "status", job)), &j); err != nil {
		c.t.Fatal(err)
	}
	return j.State, j.Tasks
}

// TestSwarm runs container jobs on a 3-node swarm and the failures the
// issue names, on one cluster to keep the suite lean.
func TestSwarm(t *testing.T) {
	testutil.Short(t)
	c := startSwarm(t, 3)
	c.importBusybox()

	t.Run("swarm formed", func(t *testing.T) {
		mgr := c.managerIndex(t)
		nodes, err := c.docker(mgr).NodeList(context.Background(), swarm.NodeListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, n := range nodes {
			if n.Status.State == swarm.NodeStateReady {
				ready++
			}
		}
		if ready != 3 {
			t.Errorf("docker node ls on the manager: %d ready nodes, want 3", ready)
		}
		out := c.mustClient("cluster", "nodes", "-o", "wide")
		if !strings.Contains(out, "manager") || strings.Count(out, "worker") != 2 {
			t.Errorf("cluster nodes does not show the roles:\n%s", out)
		}
	})

	t.Run("sweep as services", func(t *testing.T) {
		code := codeDir(t, `echo "task $CLOUDML_TASK_INDEX of $CLOUDML_TASK_COUNT on $(hostname)"
seq 1 2000
echo "{\"idx\": $CLOUDML_TASK_INDEX}" > "$CLOUDML_OUTPUT_DIR/metrics.json"
`)
		job := strings.TrimSpace(c.mustClient("submit", "--name", "boxed", "--image", busybox, "--code", code,
			"--param", "i=0,1,2,3,4,5", "--", "sh", "task.sh"))
		r := c.client("logs", "-f", job)
		if r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s\n%s", r.Code, r.Stderr, c.mustClient("status", job))
		}
		for i := 0; i < 6; i++ {
			checkSeq(t, r.Stdout, i, 2000)
		}
		state, tasks := c.status(job)
		nodes := map[string]bool{}
		for _, tk := range tasks {
			nodes[tk.NodeID] = true
		}
		if state != "JOB_STATE_SUCCEEDED" || len(nodes) < 2 {
			t.Errorf("job %s: %s on nodes %v; want succeeded on at least 2 nodes", job, state, nodes)
		}
		for i := 0; i < 6; i++ {
			if _, err := c.gcs.GetObject("cloudml-swarm", fmt.Sprintf("runs/results/%s/%d/1/manifest.json", job, i)); err != nil {
				t.Errorf("task %d manifest: %v", i, err)
			}
		}
	})

	t.Run("unknown image", func(t *testing.T) {
		job := strings.TrimSpace(c.mustClient("submit", "--name", "noimage", "--image", "cloudml/nope:1", "--code", codeDir(t, "true"), "--", "true"))
		r := c.client("logs", "-f", job)
		_, tasks := c.status(job)
		if r.Code != 3 || !strings.Contains(tasks[0].Reason, "cloudml/nope:1") {
			t.Errorf("logs -f exit %d (want 3); reason %q should name the image", r.Code, tasks[0].Reason)
		}
	})

	t.Run("killed container is retried", func(t *testing.T) {
		code := codeDir(t, `echo "attempt $CLOUDML_ATTEMPT"; [ "$CLOUDML_ATTEMPT" = 1 ] && sleep 120; exit 0`)
		job := strings.TrimSpace(c.mustClient("submit", "--name", "killed", "--image", busybox, "--code", code, "--retries", "1", "--", "sh", "task.sh"))
		id := c.waitContainer(job, false)
		if err := c.docker(id.node).ContainerKill(context.Background(), id.id, "KILL"); err != nil {
			t.Fatal(err)
		}
		r := c.client("logs", "-f", job)
		_, tasks := c.status(job)
		if r.Code != 0 || tasks[0].Attempt != 2 || !strings.Contains(r.Stdout, "attempt 1") || !strings.Contains(r.Stdout, "attempt 2") {
			t.Errorf("after SIGKILL: exit %d, task %+v\n%s", r.Code, tasks[0], r.Stdout)
		}
	})

	t.Run("agent restarted mid-task ships each line once", func(t *testing.T) {
		// The first agent ships the first 3000 lines in many small batches;
		// the new one reads them at once, so its batches differ. The task
		// holds after them until the test gives it the marker, so it runs
		// while its agent dies.
		code := codeDir(t, `i=0; while [ $i -lt 30 ]; do seq $((i*100+1)) $((i*100+100)); i=$((i+1)); sleep 0.05; done
while [ ! -e /go ]; do sleep 0.1; done; seq 3001 6000`)
		job := strings.TrimSpace(c.mustClient("submit", "--name", "restart", "--image", busybox, "--code", code, "--", "sh", "task.sh"))
		at := c.waitContainer(job, false)
		testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the first 3000 lines", func() error {
			if !strings.Contains(c.mustClient("logs", job), "[0] 3000\n") {
				return fmt.Errorf("not arrived")
			}
			return nil
		})
		c.killAgent(t, at.node) // the new agent reads the container's log again from the start
		// The guard: the task's container outlived its agent (it cannot end
		// before the marker) and the job was not over.
		if ct, err := c.docker(at.node).ContainerInspect(context.Background(), at.id); err != nil || !ct.State.Running {
			t.Fatalf("the task's container is not running after its agent was killed: %v", err)
		}
		if state, _ := c.status(job); state == "JOB_STATE_SUCCEEDED" || state == "JOB_STATE_FAILED" {
			t.Fatalf("job %s before the marker: the agent died after the task", state)
		}
		c.giveMarker(t, at.node, at.id)
		r := c.client("logs", "-f", job)
		if r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s\n%s", r.Code, r.Stderr, c.mustClient("status", job))
		}
		checkSeq(t, r.Stdout, 0, 6000)
		if n := strings.Count(r.Stdout, "\n"); n != 6000 {
			t.Errorf("logs -f printed %d lines, want 6000", n)
		}
		if _, tasks := c.status(job); tasks[0].Attempt != 1 {
			t.Errorf("task at attempt %d; the restarted agent should have kept attempt 1", tasks[0].Attempt)
		}
	})

	t.Run("cancel of running tasks", func(t *testing.T) { cancelRunning(t, c) })

	// Early in the suite: the restart wipes the daemons' data roots, which
	// takes long once they hold the Octave image.
	t.Run("coordinator killed mid-sweep", func(t *testing.T) { coordinatorRestart(t, c) })

	t.Run("image only on the manager reaches every node", func(t *testing.T) {
		ref := "cloudml/manager-only:" + strconv.Itoa(os.Getpid())
		c.importBusyboxAs(c.managerIndex(t), ref)
		code := codeDir(t, `echo "task $CLOUDML_TASK_INDEX ran"`)
		job := strings.TrimSpace(c.mustClient("submit", "--name", "mgronly", "--image", ref, "--code", code,
			"--param", "i=0,1,2,3,4,5", "--", "sh", "task.sh"))
		if r := c.client("logs", "-f", job); r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s\n%s", r.Code, r.Stderr, c.mustClient("status", job))
		}
		id, err := c.docker(c.managerIndex(t)).ImageInspect(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		c.imageOnNodes(t, ref, id.ID)
		if log := c.logText(); !strings.Contains(log, "image_source=coordinator") {
			t.Errorf("no node reports fetching %s from the coordinator", ref)
		}
	})

	t.Run("image ls and rm", func(t *testing.T) {
		// The previous subtest left the manager's upload of ref on the
		// coordinator.
		ref := "cloudml/manager-only:" + strconv.Itoa(os.Getpid())
		type image struct{ Name, ID, Size string }
		list := func() map[string]image {
			var out struct{ Images []image }
			if err := json.Unmarshal([]byte(c.mustClient("-o", "json", "image", "ls")), &out); err != nil {
				t.Fatal(err)
			}
			m := map[string]image{}
			for _, im := range out.Images {
				m[im.Name] = im
			}
			return m
		}
		kept, ok := list()[ref]
		if !ok || !strings.HasPrefix(kept.ID, "sha256:") || kept.Size == "" || kept.Size == "0" {
			t.Fatalf("image ls: %s kept as %+v, %v", ref, kept, ok)
		}
		var rm struct {
			Removed []struct {
				Image      image
				BytesFreed string
			}
		}
		if err := json.Unmarshal([]byte(c.mustClient("-o", "json", "image", "rm", ref)), &rm); err != nil {
			t.Fatal(err)
		}
		if len(rm.Removed) != 1 || rm.Removed[0].Image.ID != kept.ID || rm.Removed[0].BytesFreed != kept.Size {
			t.Errorf("image rm %s: %+v; want %s and %s bytes freed", ref, rm, kept.ID, kept.Size)
		}
		if _, ok := list()[ref]; ok {
			t.Errorf("%s still listed after image rm", ref)
		}
		if r := c.client("image", "rm", ref); r.Code != 1 || !strings.Contains(r.Stderr, "not found") {
			t.Errorf("second image rm: exit %d, stderr %q", r.Code, r.Stderr)
		}
	})

	t.Run("linreg on the Octave image", func(t *testing.T) {
		id := hostImage(t, octaveImage)
		sub := c.client("submit", "-f", filepath.Join(repoRoot(), "examples/linreg/cloudml.yaml"), "--image", octaveImage)
		if sub.Code != 0 || !strings.Contains(sub.Stderr, "image") {
			t.Fatalf("submit: exit %d; stderr should report the image push:\n%s", sub.Code, sub.Stderr)
		}
		job := strings.TrimSpace(sub.Stdout)
		r := c.client("logs", "-f", job)
		if r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s\n%s", r.Code, r.Stderr, c.mustClient("status", job))
		}
		state, tasks := c.status(job)
		nodes := map[string]bool{}
		for _, tk := range tasks {
			nodes[tk.NodeID] = true
			if !strings.Contains(r.Stdout, fmt.Sprintf("[%d] done:", tk.Index)) {
				t.Errorf("task %d logs have no final line", tk.Index)
			}
		}
		if state != "JOB_STATE_SUCCEEDED" || len(tasks) != 12 || len(nodes) < 2 {
			t.Errorf("linreg: %s, %d tasks on nodes %v", state, len(tasks), nodes)
		}
		res := c.mustClient("results", job)
		if !strings.Contains(res, "best: task 2 (lambda=0 lr=0.3)") {
			t.Errorf("results:\n%s", res)
		}
		c.imageOnNodes(t, octaveImage, id) // pushed by submit, fetched by every node
		for _, f := range []string{"model.csv", "metrics.json", "manifest.json"} {
			if _, err := c.gcs.GetObject("cloudml-swarm", fmt.Sprintf("runs/results/%s/2/1/%s", job, f)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	})

	t.Run("figures in the image become PNGs", func(t *testing.T) {
		hostImage(t, octaveImage)
		dir := t.TempDir()
		script := "x = linspace(0, 2*pi);\nfigure; plot(x, sin(x)); title('sin');\nfigure; surf(peaks(20));\ndisp('plotted');\n"
		if err := os.WriteFile(filepath.Join(dir, "draw.m"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		job := strings.TrimSpace(c.mustClient("submit", "--name", "plots", "--image", octaveImage, "--code", dir, "--", "octave-cli", "draw.m"))
		if r := c.client("logs", "-f", job); r.Code != 0 {
			t.Fatalf("logs -f: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		for _, f := range []string{"figure-1.png", "figure-2.png"} {
			obj, err := c.gcs.GetObject("cloudml-swarm", fmt.Sprintf("runs/results/%s/0/1/%s", job, f))
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(obj.Content))
			if err != nil || cfg.Width < 100 {
				t.Errorf("%s is not a PNG figure: %v %dx%d", f, err, cfg.Width, cfg.Height)
			}
		}
	})

	t.Run("dockerd stopped mid-job", func(t *testing.T) {
		// Attempt 1 of each task holds until the test gives it the marker:
		// the tasks on the node whose daemon dies can end only by attempt 2.
		job := strings.TrimSpace(c.mustClient("submit", "--name", "deadnode", "--image", busybox, "--code", codeDir(t, markerScript),
			"--param", "i=0,1,2,3", "--", "sh", "task.sh"))
		victim := -1 // a worker running some of them: the manager's dockerd is the swarm's control plane
		testutil.Eventually(t, 90*time.Second, 200*time.Millisecond, "every task running, some on a worker", func() error {
			running := c.jobContainers(job)
			n := 0
			victim = -1
			for i, ids := range running {
				n += len(ids)
				if len(ids) > 0 && !c.isManager(i) {
					victim = i
				}
			}
			if n != 4 || victim < 0 {
				return fmt.Errorf("%d of 4 containers running: %v", n, running)
			}
			return nil
		})
		others := c.jobContainers(job)
		delete(others, victim)
		pid, err := os.ReadFile(filepath.Join("/run/cloudml-netns", c.name, fmt.Sprintf("n%d", victim), "docker.pid"))
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(pid)))
		if err != nil || p <= 1 {
			t.Fatalf("dockerd pid file holds %q: refusing to signal it", pid) // kill(0) would hit this test's own process group
		}
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for node, ids := range others {
			for _, id := range ids {
				c.giveMarker(t, node, id)
			}
		}
		r := c.client("logs", "-f", job)
		state, tasks := c.status(job)
		if r.Code != 0 || state != "JOB_STATE_SUCCEEDED" {
			t.Errorf("job after a dead dockerd: exit %d, %s, tasks %+v", r.Code, state, tasks)
		}
		retried := false
		for _, tk := range tasks {
			retried = retried || tk.Attempt >= 2
		}
		if !retried {
			t.Errorf("no task reached attempt 2 after the daemon running some died: %+v", tasks)
		}
		down := false
		for _, n := range c.listNodes() {
			if n.State == "NODE_STATE_DOWN" && strings.Contains(n.Message, "runtime") {
				down = true
			}
		}
		if !down {
			t.Errorf("no node shows down with a runtime error: %+v", c.listNodes())
		}
	})
}

type containerAt struct {
	node int
	id   string
}

// waitContainer finds a running container of job, on a worker if asked.
func (c *swarmCluster) waitContainer(job string, worker bool) containerAt {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for i := 0; i < c.nodes; i++ {
			d := c.docker(i)
			if info, err := d.Info(context.Background()); worker && (err != nil || info.Swarm.ControlAvailable) {
				continue
			}
			list, err := d.ContainerList(context.Background(), container.ListOptions{
				Filters: filters.NewArgs(filters.Arg("label", "cloudml.job="+job), filters.Arg("status", "running"))})
			if err == nil && len(list) > 0 {
				return containerAt{node: i, id: list[0].ID}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("no running container of %s within 60s\n%s", job, c.mustClient("status", job))
	return containerAt{}
}

// checkSeq asserts task i's numbered lines 1..n are all there, in order.
func checkSeq(t *testing.T, out string, task, n int) {
	t.Helper()
	prefix := fmt.Sprintf("[%d] ", task)
	next := 1
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		if v, err := strconv.Atoi(rest); err == nil {
			if v != next {
				t.Errorf("task %d: line %d after %d", task, v, next-1)
				return
			}
			next++
		}
	}
	if next != n+1 {
		t.Errorf("task %d: got %d of %d numbered lines", task, next-1, n)
	}
}

// waitTasksWaiting waits until job runs with each of its tasks RUNNING at
// attempt 1 and its logs holding line(i) for every task i: the tasks
// printed their lines and now wait on something that never comes.
func (c *swarmCluster) waitTasksWaiting(t *testing.T, job string, tasks int, limit time.Duration, line func(i int) string) {
	t.Helper()
	testutil.Eventually(t, limit, 200*time.Millisecond, "every task running its attempt 1, its lines arrived", func() error {
		state, ts := c.status(job)
		running := 0
		for _, tk := range ts {
			if tk.State == "TASK_STATE_RUNNING" && tk.Attempt == 1 {
				running++
			}
		}
		logs := c.mustClient("logs", job)
		for i := 0; i < tasks; i++ {
			if !strings.Contains(logs, line(i)) {
				return fmt.Errorf("job %s, %d of %d tasks running; task %d has not printed its lines", state, running, tasks, i)
			}
		}
		if state != "JOB_STATE_RUNNING" || running != tasks {
			return fmt.Errorf("job %s, %d of %d tasks running", state, running, tasks)
		}
		return nil
	})
}
