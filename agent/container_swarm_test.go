package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/agent/attempt"
	ctr "github.com/cloudml/cloudml/agent/container"
	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// swarmCluster is a 2-node swarm of real dockerd instances in network
// namespaces, one agent per node talking to a swarmFake.
type swarmCluster struct {
	cl      *netns.Cluster
	f       *swarmFake
	docker  []*client.Client
	nodeIDs []string // coordinator node id per node
	image   string
	bucket  string // file:// root of the code and the results
}

func newSwarmCluster(t *testing.T) *swarmCluster {
	testutil.Short(t)
	testutil.NeedSystem(t, "network namespaces, root and dockerd", netns.Check())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := netns.Create(ctx, netns.Config{Name: netns.UniqueName("ctr"), Nodes: 2, WorkDir: t.TempDir(),
		Logger: testutil.Logger(t), Dockerd: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cl.Close(); err != nil {
			t.Error(err)
		}
	})
	s := &swarmCluster{cl: cl}
	if s.image, err = cl.ImportBusybox(ctx); err != nil {
		t.Fatal(err)
	}
	nodes := cl.Nodes()
	for i := range nodes {
		d, err := cl.DockerClient(i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		s.docker = append(s.docker, d)
	}
	// The swarm is formed directly here; agent/swarm forms it in production.
	if _, err := s.docker[0].SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: nodes[0].Addr}); err != nil {
		t.Fatal(err)
	}
	sw, err := s.docker[0].SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.docker[1].SwarmJoin(ctx, swarm.JoinRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: nodes[1].Addr,
		RemoteAddrs: []string{nodes[0].Addr + ":2377"}, JoinToken: sw.JoinTokens.Worker}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "2 ready swarm nodes", func() bool {
		list, err := s.docker[0].NodeList(ctx, swarm.NodeListOptions{})
		ready := 0
		for _, n := range list {
			if n.Status.State == swarm.NodeStateReady {
				ready++
			}
		}
		return err == nil && ready == 2
	})

	var dial fakeDial
	s.f, dial = newSwarmFake(t)
	swarmRoot, root := t.TempDir(), t.TempDir()
	s.bucket = "file://" + root
	for i := range nodes {
		work := t.TempDir()
		// A worker learns its own swarm node id a moment after the manager
		// lists it as ready.
		var info system.Info
		pollUntil(t, fmt.Sprintf("node %d to know its swarm node id", i), func() bool {
			var err error
			info, err = s.docker[i].Info(ctx)
			return err == nil && info.Swarm.NodeID != ""
		})
		// agent/swarm makes this link when it inits or joins.
		if err := os.Symlink(work, filepath.Join(swarmRoot, info.Swarm.NodeID)); err != nil {
			t.Fatal(err)
		}
		cfg := baseConfig(t, dial, work)
		cfg.Docker, cfg.SwarmRoot, cfg.Hostname = nodes[i].DockerHost, swarmRoot, nodes[i].Name
		startAgent(t, cfg)
		s.f.wait(t, "agent registration", func() bool { return len(s.f.pushes) == i+1 })
		s.nodeIDs = append(s.nodeIDs, fmt.Sprintf("node-%d", i+1))
	}
	return s
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *swarmCluster) cml(t *testing.T, node int, what string) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	switch what {
	case "services":
		list, err := s.docker[node].ServiceList(ctx, swarm.ServiceListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range list {
			names = append(names, x.Spec.Name)
		}
	case "volumes":
		list, err := s.docker[node].VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", ctr.LabelAttempt))})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range list.Volumes {
			names = append(names, v.Name)
		}
	case "containers":
		list, err := s.docker[node].ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", ctr.LabelAttempt))})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			names = append(names, c.ID)
		}
	}
	return names
}

func swarmAsg(s *swarmCluster, job string, task int32, image string, code *cloudmlv1.Source, cmd ...string) *cloudmlv1.Assignment {
	return &cloudmlv1.Assignment{
		Ref: &cloudmlv1.TaskRef{JobId: job, TaskIndex: task, Attempt: 1}, TaskCount: 4, Command: cmd,
		Code: code, Output: s.bucket + "/out", Image: image, SwarmService: true,
		Params: map[string]string{"lr": fmt.Sprint(task)},
	}
}

func assignMsg(asg *cloudmlv1.Assignment) *cloudmlv1.SessionResponse {
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Assignment{Assignment: asg}}
}

func cancelMsg(ref *cloudmlv1.TaskRef) *cloudmlv1.SessionResponse {
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Cancel{Cancel: &cloudmlv1.Cancel{Ref: ref, Reason: "cleanup"}}}
}

// TestSwarmServicesOnRealDocker runs a job as swarm services on a real
// 2-node swarm: staging on both nodes, 4 tasks placed by swarm and reported
// by the node each ran on, then an image no node has and a killed task.
func TestSwarmServicesOnRealDocker(t *testing.T) {
	s := newSwarmCluster(t)
	f, manager := s.f, s.nodeIDs[0]
	root := strings.TrimPrefix(s.bucket, "file://")
	if err := os.MkdirAll(filepath.Join(root, "code"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "code", "hello.txt"), []byte("hello from the code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code := &cloudmlv1.Source{Url: s.bucket + "/code/"}
	job := "sweep-abc123"
	for _, n := range s.nodeIDs {
		f.sendTo(t, n, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_StageJob{StageJob: &cloudmlv1.StageJob{JobId: job, Code: code}}})
	}
	f.wait(t, "stage reports", func() bool { return len(f.stages) == 2 })
	for n, r := range f.stages {
		if r.GetError() != "" || r.GetJobId() != job || r.GetBytesDownloaded() != int64(len("hello from the code\n")) {
			t.Errorf("stage report of %s = %v", n, r)
		}
	}

	// The tasks last a second so they overlap: swarm spreads tasks that
	// run at once, while one task at a time could land on either node.
	script := `cat hello.txt; echo task $CLOUDML_TASK_INDEX; seq 1000; echo "{\"v\": $CLOUDML_TASK_INDEX}" > $CLOUDML_OUTPUT_DIR/metrics.json; sleep 1`
	var refs []*cloudmlv1.TaskRef
	for i := range int32(4) {
		asg := swarmAsg(s, job, i, s.image, code, "sh", "-c", script)
		refs = append(refs, asg.GetRef())
		f.sendTo(t, manager, assignMsg(asg))
	}
	ranOn := map[string]bool{}
	for i, ref := range refs {
		final := f.waitFinal(t, ref)
		states, nodes := f.reportsOf(ref)
		if final.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || final.GetMetrics()["v"] != float64(i) {
			t.Errorf("task %d: %v %q metrics %v", i, final.GetState(), final.GetMessage(), final.GetMetrics())
		}
		if len(states) != 2 || states[0] != cloudmlv1.TaskState_TASK_STATE_RUNNING || nodes[0] != nodes[1] {
			t.Errorf("task %d: states %v from %v, want RUNNING, SUCCEEDED from one node", i, states, nodes)
		}
		ranOn[nodes[0]] = true
		var want strings.Builder
		fmt.Fprintf(&want, "hello from the code\ntask %d\n", i)
		for n := 1; n <= 1000; n++ {
			fmt.Fprintf(&want, "%d\n", n)
		}
		if out, errs, _ := f.logText(ref); out != want.String() || errs != "" {
			t.Errorf("task %d: stdout %d bytes (want %d), stderr %q", i, len(out), want.Len(), errs)
		}
		data, err := os.ReadFile(filepath.Join(root, "out", "results", job, fmt.Sprint(i), "1", attempt.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		var m attempt.Manifest
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if m.NodeID != nodes[0] || m.ExitCode != 0 || m.Params["lr"] != fmt.Sprint(i) || len(m.Files) != 3 {
			t.Errorf("task %d manifest: node %s exit %d params %v files %v", i, m.NodeID, m.ExitCode, m.Params, m.Files)
		}
	}
	if len(ranOn) < 2 {
		t.Errorf("tasks ran on %v, want both nodes", ranOn)
	}
	// The nodes remove their containers and volumes; Cancel removes services.
	for _, ref := range refs {
		f.sendTo(t, manager, cancelMsg(ref))
	}
	pollUntil(t, "services, containers and volumes removed", func() bool {
		return len(s.cml(t, 0, "services")) == 0 && len(s.cml(t, 0, "containers"))+len(s.cml(t, 1, "containers")) == 0 &&
			len(s.cml(t, 0, "volumes"))+len(s.cml(t, 1, "volumes")) == 0
	})

	t.Run("image on no node", func(t *testing.T) {
		asg := swarmAsg(s, job, 0, "cloudml/no-such-image:1", code, "true")
		asg.Ref.Attempt = 2
		f.sendTo(t, manager, assignMsg(asg))
		final := f.waitFinal(t, asg.GetRef())
		list, err := s.docker[0].NodeList(context.Background(), swarm.NodeListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, n := range list {
			want = append(want, fmt.Sprintf(`image "cloudml/no-such-image:1" is not on node %s and no registry serves it: load it on the nodes or push it to a registry`, n.Description.Hostname))
		}
		if final.GetState() != cloudmlv1.TaskState_TASK_STATE_FAILED || final.GetExitCode() != -1 || !slices.Contains(want, final.GetMessage()) {
			t.Errorf("report %v %d %q, want FAILED -1 and one of %q", final.GetState(), final.GetExitCode(), final.GetMessage(), want)
		}
		pollUntil(t, "the service removed", func() bool { return len(s.cml(t, 0, "services")) == 0 })
	})

	t.Run("killed with SIGKILL", func(t *testing.T) {
		asg := swarmAsg(s, job, 1, s.image, code, "sh", "-c", "echo ready; exec sleep 600")
		asg.Ref.Attempt = 2
		f.sendTo(t, manager, assignMsg(asg))
		f.wait(t, "the task's first line", func() bool {
			batches := f.logs[keyOf(asg.GetRef())]
			return len(batches) > 0 && string(batches[0].GetData()) == "ready\n"
		})
		killed := false
		for i := range s.docker {
			for _, id := range s.cml(t, i, "containers") {
				out, err := s.cl.Command(context.Background(), i, "docker", "kill", "-s", "KILL", id).CombinedOutput()
				if err != nil {
					t.Fatalf("docker kill: %v: %s", err, out)
				}
				killed = true
			}
		}
		if !killed {
			t.Fatal("no task container to kill")
		}
		final := f.waitFinal(t, asg.GetRef())
		if final.GetState() != cloudmlv1.TaskState_TASK_STATE_FAILED || final.GetExitCode() != 137 || !strings.Contains(final.GetMessage(), "killed") {
			t.Errorf("report %v %d %q, want FAILED 137 killed", final.GetState(), final.GetExitCode(), final.GetMessage())
		}
		f.sendTo(t, manager, cancelMsg(asg.GetRef()))
		pollUntil(t, "the service removed", func() bool { return len(s.cml(t, 0, "services")) == 0 })
	})
}
