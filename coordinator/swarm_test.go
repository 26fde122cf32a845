package coordinator

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// containerSpec is gridSpec of a container job (busybox).
func containerSpec(name string, tasks int) *cloudmlv1.JobSpec {
	spec := gridSpec(name, tasks)
	spec.Image = "cloudml/busybox:test"
	return spec
}

// dockerNode registers and connects a fake agent that runs Docker.
func dockerNode(t *testing.T, h *harness, addr string) *fakeAgent {
	t.Helper()
	a := newAgentWith(t, h, &cloudmlv1.RegisterRequest{Hostname: addr, Address: addr, Slots: 2, Runtime: runtimeDocker})
	a.open()
	return a
}

func (a *fakeAgent) reportSwarm(req *cloudmlv1.ReportSwarmRequest) {
	a.t.Helper()
	if _, err := a.client.ReportSwarm(ctxT(a.t), req, a.creds()); err != nil {
		a.t.Fatalf("ReportSwarm: %v", err)
	}
}

func (a *fakeAgent) reportStage(job, errText string) {
	a.t.Helper()
	if _, err := a.client.ReportStage(ctxT(a.t), &cloudmlv1.ReportStageRequest{JobId: job, Error: errText}, a.creds()); err != nil {
		a.t.Fatalf("ReportStage: %v", err)
	}
}

// formSwarm plays the swarm's formation: node 1 founds it, node 2 joins
// with the token the manager reported.
func formSwarm(t *testing.T, h *harness) (mgr, wrk *fakeAgent) {
	t.Helper()
	mgr = dockerNode(t, h, "10.0.0.11")
	init := mgr.nextOther().GetSwarmInit()
	if init == nil || init.GetAdvertiseAddr() != "10.0.0.11" {
		t.Fatalf("first docker node got %v, want SwarmInit advertising 10.0.0.11", init)
	}
	wrk = dockerNode(t, h, "10.0.0.12")
	mgr.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-1", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.11:2377", WorkerJoinToken: "SWMTKN-1-secret"})
	join := wrk.nextOther().GetSwarmJoin()
	if join.GetJoinToken() != "SWMTKN-1-secret" || join.GetManagerAddrs()[0] != "10.0.0.11:2377" || join.GetAdvertiseAddr() != "10.0.0.12" {
		t.Fatalf("second docker node got join %v", join)
	}
	wrk.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-2", Role: cloudmlv1.SwarmRole_SWARM_ROLE_WORKER})
	return mgr, wrk
}

func TestSwarmFormsAndRunsContainerJob(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := nodes.GetNodes(); n[0].GetSwarmRole() != "manager" || n[1].GetSwarmRole() != "worker" || n[1].GetSwarmNodeId() != "sw-2" {
		t.Fatalf("nodes %v", n)
	}

	spec := containerSpec("boxed", 3)
	spec.Timeout = durationpb.New(0)
	job := h.submit(spec)
	for _, a := range []*fakeAgent{mgr, wrk} {
		st := a.nextOther().GetStageJob()
		if st.GetJobId() != job.GetId() || st.GetCode().GetDigest() != "sha256:00" {
			t.Fatalf("node %s got %v, want StageJob of %s", a.id, st, job.GetId())
		}
	}
	mgr.none()
	if r := h.job(job.GetId()).GetTasks()[0].GetReason(); !strings.Contains(r, "staging code and data on 2 of 2") {
		t.Errorf("reason while staging: %q", r)
	}
	mgr.reportStage(job.GetId(), "")
	wrk.reportStage(job.GetId(), "")

	// Every attempt goes to the manager as a service; swarm "places" them,
	// and the node each lands on claims it with its first report.
	for i := 0; i < 3; i++ {
		as := mgr.next()
		if !as.GetSwarmService() || as.GetImage() != "cloudml/busybox:test" {
			t.Fatalf("assignment %v is not a swarm service", as)
		}
		runner := wrk
		if i == 0 {
			runner = mgr
		}
		runner.run(as, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
		if i == 1 {
			// The services are removed together once the job is over, not
			// one by one while it runs (each removal delays swarm's next
			// placement). The session is ordered: once a later command
			// arrives, an earlier cancel would have too.
			h.submit(spec)
			mgr.nextOther()
			if len(mgr.cancels) != 0 {
				t.Fatalf("a service was removed while its job still ran")
			}
		}
	}
	removed := map[int32]bool{}
	for i := 0; i < 3; i++ {
		removed[mgr.nextCancel().GetRef().GetTaskIndex()] = true
	}
	if len(removed) != 3 {
		t.Errorf("services removed for tasks %v, want 0, 1 and 2", removed)
	}
	j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	if got := []string{j.GetTasks()[0].GetNodeId(), j.GetTasks()[1].GetNodeId()}; got[0] != mgr.id || got[1] != wrk.id {
		t.Errorf("tasks ran on %v, want the claiming nodes %s and %s", got, mgr.id, wrk.id)
	}
	// A report from a third node for an attempt another node claimed is refused.
	err = mgr.report(&cloudmlv1.TaskRef{JobId: job.GetId(), TaskIndex: 1, Attempt: 1}, cloudmlv1.TaskState_TASK_STATE_FAILED, 1, 0, nil)
	wantCode(t, err, codes.FailedPrecondition)
}

// After cluster down and up, the new machines found a new swarm: the
// removed manager's is gone, and joining its address would never work.
func TestRemovedManagerTakesTheSwarmAlong(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	for _, a := range []*fakeAgent{wrk, mgr} {
		if _, err := h.cluster.RemoveNode(ctxT(t), &cloudmlv1.RemoveNodeRequest{NodeId: a.id}); err != nil {
			t.Fatal(err)
		}
	}
	again := dockerNode(t, h, "10.0.0.13")
	if got := again.nextOther(); got.GetSwarmInit().GetAdvertiseAddr() != "10.0.0.13" {
		t.Fatalf("a docker node after the swarm's nodes were removed got %v, want SwarmInit advertising 10.0.0.13", got)
	}
	again.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-3", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.13:2377", WorkerJoinToken: "SWMTKN-1-new"})
	next := dockerNode(t, h, "10.0.0.14")
	if join := next.nextOther().GetSwarmJoin(); join.GetJoinToken() != "SWMTKN-1-new" || join.GetManagerAddrs()[0] != "10.0.0.13:2377" {
		t.Fatalf("the next docker node got join %v, want the new manager's address and token", join)
	}
}

func TestContainerJobWaitsWithReasons(t *testing.T) {
	h := start(t, t.TempDir())
	newAgent(t, h, 2).open()
	spec := containerSpec("boxed", 1)
	job := h.submit(spec)
	waitFor(t, "a reason naming Docker", func() bool {
		return strings.Contains(h.job(job.GetId()).GetTasks()[0].GetReason(), "no node runs Docker")
	})
}

// TestStagingFailureFailsTheJob: when no node can stage a job, its inputs
// are at fault: the job fails, using no retry.
func TestStagingFailureFailsTheJob(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("boxed", 2)
	spec.Retries = 3
	job := h.submit(spec)
	mgr.nextOther()
	wrk.nextOther()
	mgr.reportStage(job.GetId(), `object "code/x.tar.gz" does not exist`)
	wrk.reportStage(job.GetId(), `object "code/x.tar.gz" does not exist`)
	j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_FAILED)
	if r := j.GetTasks()[0].GetReason(); !strings.Contains(r, "staging on ") || !strings.Contains(r, "does not exist") {
		t.Errorf("reason %q", r)
	}
	mgr.none()
}

// TestStagingFailureOnOneNode: a node that fails to stage while another
// staged has a problem of its own: the job runs, its services kept off
// that node, which is asked to stage again after a backoff.
func TestStagingFailureOnOneNode(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("boxed", 1))
	mgr.nextOther()
	wrk.nextOther()
	mgr.reportStage(job.GetId(), "")
	wrk.reportStage(job.GetId(), "disk full")
	as := mgr.next()
	if avoid := as.GetAvoidSwarmNodes(); len(avoid) != 1 || avoid[0] != "sw-2" {
		t.Errorf("the service avoids %v, want the node that failed to stage, sw-2", avoid)
	}
	// Its service could not be made: the task waits to be placed again,
	// and meanwhile the node that failed is asked to stage again.
	if err := mgr.report(as.GetRef(), cloudmlv1.TaskState_TASK_STATE_FAILED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if st := wrk.nextOther().GetStageJob(); st.GetJobId() != job.GetId() {
		t.Fatalf("the node that failed to stage got %v, want StageJob again", st)
	}
	wrk.reportStage(job.GetId(), "")
	for _, st := range h.job(job.GetId()).GetStages() {
		if st.GetState() != cloudmlv1.StageState_STAGE_STATE_STAGED {
			t.Errorf("after staging again: %v", st)
		}
	}
	as = mgr.next()
	if as.GetRef().GetAttempt() != 2 {
		t.Errorf("after the platform failure got %v; want attempt 2", as.GetRef())
	}
	mgr.run(as, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
}

func TestRuntimeFailureReschedules(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("boxed", 1)
	job := h.submit(spec)
	mgr.nextOther()
	wrk.nextOther()
	mgr.reportStage(job.GetId(), "")
	wrk.reportStage(job.GetId(), "")
	as := mgr.next()
	if err := wrk.report(as.GetRef(), cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	// The worker's dockerd dies: its heartbeat says so.
	if _, err := wrk.client.Heartbeat(ctxT(t), &cloudmlv1.HeartbeatRequest{RuntimeError: "docker daemon at unix:///x: connection refused"}, wrk.creds()); err != nil {
		t.Fatal(err)
	}
	again := mgr.next()
	if again.GetRef().GetAttempt() != 2 || !again.GetSwarmService() {
		t.Fatalf("after the runtime failure got %v, want attempt 2 as a service", again.GetRef())
	}
	if avoid := again.GetAvoidSwarmNodes(); len(avoid) != 1 || avoid[0] != "sw-2" {
		t.Errorf("attempt 2 avoids %v, want the dead node sw-2", avoid)
	}
	nodes, _ := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	for _, n := range nodes.GetNodes() {
		if n.GetId() == wrk.id && (n.GetState() != cloudmlv1.NodeState_NODE_STATE_DOWN || !strings.Contains(n.GetMessage(), "connection refused")) {
			t.Errorf("worker node %v, want down with the runtime error", n)
		}
	}
	mgr.run(again, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	if err := wrk.heartbeat(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "worker ready again", func() bool {
		nodes, _ := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
		return nodes.GetNodes()[1].GetState() == cloudmlv1.NodeState_NODE_STATE_READY
	})
}

// TestUnclaimedServiceOfADeadNodeIsMadeAgain: a service swarm may have
// placed on a node whose dockerd then died is never claimed (restart
// condition none keeps it there); the coordinator makes it again, kept off
// that node, instead of waiting forever.
func TestUnclaimedServiceOfADeadNodeIsMadeAgain(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("stuck", 1))
	mgr.nextOther()
	wrk.nextOther()
	mgr.reportStage(job.GetId(), "")
	wrk.reportStage(job.GetId(), "")
	first := mgr.next() // its service is made; nobody claims it
	if _, err := wrk.client.Heartbeat(ctxT(t), &cloudmlv1.HeartbeatRequest{RuntimeError: "docker daemon: connection refused"}, wrk.creds()); err != nil {
		t.Fatal(err)
	}
	again := mgr.next()
	if again.GetRef().GetTaskIndex() != first.GetRef().GetTaskIndex() || again.GetRef().GetAttempt() != 2 {
		t.Fatalf("after the runtime failure got %v, want attempt 2 of the unclaimed task", again.GetRef())
	}
	if avoid := again.GetAvoidSwarmNodes(); len(avoid) != 1 || avoid[0] != "sw-2" {
		t.Errorf("attempt 2 avoids %v, want the dead node sw-2", avoid)
	}
	if c := mgr.nextCancel(); c.GetRef().GetAttempt() != 1 {
		t.Errorf("the manager was told to cancel %v, want attempt 1's service", c.GetRef())
	}
	mgr.run(again, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	if j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED); j.GetTasks()[0].GetAttempt() != 2 {
		t.Errorf("job = %v", j)
	}
}

func TestContainerJobTooBigForAnyNode(t *testing.T) {
	h := start(t, t.TempDir())
	formSwarm(t, h)
	spec := containerSpec("huge", 1)
	spec.Resources = &cloudmlv1.Resources{Cpus: 8}
	job := h.submit(spec)
	waitFor(t, "a reason naming the size", func() bool {
		return strings.Contains(h.job(job.GetId()).GetTasks()[0].GetReason(), "needs 8 CPUs; the largest swarm node has 2 slots")
	})
}

// A job cancelled while its other services only wait in the swarm is over
// at once; the services of its ended attempts, kept for a batch, go too.
func TestCancelledContainerJobRemovesEveryService(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("boxed", 3)
	job := h.submit(spec)
	for _, a := range []*fakeAgent{mgr, wrk} {
		a.nextOther() // StageJob
		a.reportStage(job.GetId(), "")
	}
	first := mgr.next()
	mgr.next()
	mgr.next()
	wrk.run(first, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil) // its service stays for now
	if _, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	removed := map[int32]bool{}
	for len(removed) < 3 {
		removed[mgr.nextCancel().GetRef().GetTaskIndex()] = true
	}
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_CANCELLED)
}

// TestStagesShowEachNodesProgress: GetJob lists each swarm node's staging,
// with the bytes of interim reports while it lasts; a late interim report
// does not undo the final one.
func TestStagesShowEachNodesProgress(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("staged", 1))
	for _, a := range []*fakeAgent{mgr, wrk} {
		a.nextOther()
	}
	interim := func(a *fakeAgent, n int64) {
		t.Helper()
		req := &cloudmlv1.ReportStageRequest{JobId: job.GetId(), BytesDownloaded: n, InProgress: true}
		if _, err := a.client.ReportStage(ctxT(t), req, a.creds()); err != nil {
			t.Fatal(err)
		}
	}
	interim(mgr, 5<<20)
	got := h.job(job.GetId()).GetStages()
	want := []*cloudmlv1.NodeStage{
		{NodeId: mgr.id, State: cloudmlv1.StageState_STAGE_STATE_STAGING, BytesDownloaded: 5 << 20},
		{NodeId: wrk.id, State: cloudmlv1.StageState_STAGE_STATE_STAGING},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("stages while staging (-want +got):\n%s", diff)
	}
	if r := h.job(job.GetId()).GetTasks()[0].GetReason(); !strings.Contains(r, "staging code and data on 2 of 2") {
		t.Errorf("an interim report ended the staging: reason %q", r)
	}
	if _, err := mgr.client.ReportStage(ctxT(t), &cloudmlv1.ReportStageRequest{JobId: job.GetId(), BytesDownloaded: 8 << 20}, mgr.creds()); err != nil {
		t.Fatal(err)
	}
	interim(mgr, 6<<20)
	wrk.reportStage(job.GetId(), "disk full")
	want = []*cloudmlv1.NodeStage{
		{NodeId: mgr.id, State: cloudmlv1.StageState_STAGE_STATE_STAGED, BytesDownloaded: 8 << 20},
		{NodeId: wrk.id, State: cloudmlv1.StageState_STAGE_STATE_FAILED, Error: "disk full"},
	}
	if diff := cmp.Diff(want, h.job(job.GetId()).GetStages(), protocmp.Transform()); diff != "" {
		t.Errorf("stages after the final reports (-want +got):\n%s", diff)
	}
	if list, err := h.jobs.ListJobs(ctxT(t), &cloudmlv1.ListJobsRequest{}); err != nil || len(list.GetJobs()[0].GetStages()) != 0 {
		t.Errorf("ListJobs carries stages (%v): %v", err, list.GetJobs()[0].GetStages())
	}
}

// TestClaimedSwarmAttemptCountsOnItsNode: a swarm attempt holds no node's
// slots until a node claims it, by its first report or by logs that
// overtook it; from then on it counts on that node, in ListNodes and in
// the free slots the scheduler sees, and not after it ends.
func TestClaimedSwarmAttemptCountsOnItsNode(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("claimed", 2)
	spec.Timeout = durationpb.New(0)
	job := h.submit(spec)
	for _, a := range []*fakeAgent{mgr, wrk} {
		a.nextOther()
		a.reportStage(job.GetId(), "")
	}
	running := func() map[string]int32 {
		nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int32{}
		for _, n := range nodes.GetNodes() {
			out[n.GetId()] = n.GetRunningTasks()
		}
		return out
	}
	first, second := mgr.next().GetRef(), mgr.next().GetRef()
	if got := running(); got[mgr.id]+got[wrk.id] != 0 {
		t.Fatalf("running before any claim: %v, want none", got)
	}
	// The worker's logs claim the first attempt before its first report.
	line := &cloudmlv1.LogBatch{Seq: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte("early\n")}
	if _, err := wrk.publish(first, line); err != nil {
		t.Fatal(err)
	}
	if got := running(); got[wrk.id] != 1 || got[mgr.id] != 0 {
		t.Errorf("running after the worker's logs claimed %v: %v, want 1 on %s", first, got, wrk.id)
	}
	if err := mgr.report(second, cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := running(); got[wrk.id] != 1 || got[mgr.id] != 1 {
		t.Errorf("running after the manager's report claimed %v: %v, want 1 on each", second, got)
	}
	if err := wrk.report(first, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := running(); got[wrk.id] != 0 || got[mgr.id] != 1 {
		t.Errorf("running after %v ended: %v, want 1 on %s only", first, got, mgr.id)
	}
}
