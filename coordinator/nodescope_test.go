package coordinator

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// A node acts only for itself. One test per rule, each printing its figure.

// TestNodeClaimingHugeSlotsGetsItsCapOnly: a node that claims 2^30 slots
// is held to its token's cap (3) and, without one, to the coordinator's
// (4): of 40 queued tasks it holds no more at once.
func TestNodeClaimingHugeSlotsGetsItsCapOnly(t *testing.T) {
	h := start(t, "", func(c *Config) { c.MaxNodeSlots = 4 })
	resp, err := h.cluster.CreateJoinToken(ctxT(t), &cloudmlv1.CreateJoinTokenRequest{MaxSlots: 3})
	if err != nil {
		t.Fatal(err)
	}
	capped := newAgentWithToken(t, h, resp.GetToken(), 1<<30)
	uncapped := newAgentWith(t, h, &cloudmlv1.RegisterRequest{Hostname: "greedy", Slots: 1 << 30, Runtime: "process"})
	capped.open()
	uncapped.open()
	job := h.submit(gridSpec("capture", 40))
	// A barrier: both nodes full means the scheduler placed all it will.
	h.waitTaskStates(job.GetId(), map[string]int32{"assigned": 7, "pending": 33})
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]int32{capped.id: 3, uncapped.id: 4}
	for _, n := range nodes.GetNodes() {
		got, want := n.GetRunningTasks(), caps[n.GetId()]
		t.Logf("node %s claimed %d slots: holds %d tasks at once, cap %d, captured beyond its cap: %d", n.GetId(), 1<<30, got, want, max(got-want, 0))
		if got != want || n.GetSlots() != want {
			t.Errorf("node %s holds %d tasks with %d slots, want its cap %d", n.GetId(), got, n.GetSlots(), want)
		}
	}
}

// TestOnlyTheChosenNodeManagesTheSwarm: a node the coordinator did not ask
// to found the swarm cannot declare itself manager; the next node is told
// to join the chosen manager's address, never the impostor's.
func TestOnlyTheChosenNodeManagesTheSwarm(t *testing.T) {
	h := start(t, "")
	chosen := dockerNode(t, h, "10.0.0.11")
	if chosen.nextOther().GetSwarmInit() == nil {
		t.Fatal("the first docker node was not asked to found the swarm")
	}
	impostor := dockerNode(t, h, "10.6.6.6")
	_, err := impostor.client.ReportSwarm(ctxT(t), &cloudmlv1.ReportSwarmRequest{SwarmNodeId: "evil", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.6.6.6:2377", WorkerJoinToken: "SWMTKN-1-evil"})
	wantCode(t, err, codes.PermissionDenied)
	chosen.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-1", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.11:2377", WorkerJoinToken: "SWMTKN-1-real"})
	next := dockerNode(t, h, "10.0.0.13")
	join := next.nextOther().GetSwarmJoin()
	fromImpostor := 0
	if join.GetManagerAddrs()[0] == "10.6.6.6:2377" || join.GetJoinToken() == "SWMTKN-1-evil" {
		fromImpostor = 1
	}
	t.Logf("join commands naming the impostor's address or token: %d of 1", fromImpostor)
	if fromImpostor != 0 || join.GetManagerAddrs()[0] != "10.0.0.11:2377" {
		t.Errorf("next node told to join %v with %q, want the chosen manager's 10.0.0.11:2377", join.GetManagerAddrs(), join.GetJoinToken())
	}
}

// TestNodeReportsOnlyItsOwnAttempts: another node's attempt, a swarm
// attempt claimed by a node outside the swarm, and logs of a lost attempt
// are all refused.
func TestNodeReportsOnlyItsOwnAttempts(t *testing.T) {
	h := start(t, "")
	a, b := newAgent(t, h, 1), newAgent(t, h, 1)
	a.open()
	job := h.submit(gridSpec("own", 1))
	as := a.next()
	wantCode(t, b.report(as.GetRef(), cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil), codes.FailedPrecondition)
	_, err := b.publish(as.GetRef(), batch(1, "not mine\n"))
	wantCode(t, err, codes.FailedPrecondition)

	// a's attempt is lost (a removed); a's late logs for it are refused.
	if err := a.report(as.GetRef(), cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	h.c.mu.Lock()
	h.c.markDown(newChanges(), h.c.nodes[a.id], time.Now())
	h.c.mu.Unlock()
	_, err = a.publish(as.GetRef(), batch(1, "from a lost attempt\n"))
	wantCode(t, err, codes.FailedPrecondition)
	if j := h.job(job.GetId()); j.GetTasks()[0].GetState() != cloudmlv1.TaskState_TASK_STATE_PENDING {
		t.Errorf("task after its node went down = %v, want pending", j.GetTasks()[0].GetState())
	}
}

// TestSwarmAttemptClaimedOnlyFromTheSwarm: a process node cannot claim an
// unclaimed swarm attempt; a node in the swarm can.
func TestSwarmAttemptClaimedOnlyFromTheSwarm(t *testing.T) {
	h := start(t, "")
	mgr, wrk := formSwarm(t, h)
	outsider := newAgent(t, h, 1)
	job := h.submit(containerSpec("claim", 1))
	for _, n := range []*fakeAgent{mgr, wrk} {
		if sj := n.nextOther().GetStageJob(); sj.GetJobId() != job.GetId() {
			t.Fatalf("node %s got %v, want StageJob", n.id, sj)
		}
		n.reportStage(job.GetId(), "")
	}
	as := mgr.next()
	running := cloudmlv1.TaskState_TASK_STATE_RUNNING
	wantCode(t, outsider.report(as.GetRef(), running, 0, 0, nil), codes.FailedPrecondition)
	if err := wrk.report(as.GetRef(), running, 0, 0, nil); err != nil {
		t.Fatalf("claim from the node swarm placed it on: %v", err)
	}
}

// TestSilentNodeLosesItsTask: a node that heartbeats but never starts its
// assignment holds it no longer than the start deadline; one that starts
// and never ends holds it no longer than the job's timeout plus the grace.
func TestSilentNodeLosesItsTask(t *testing.T) {
	const deadline = 500 * time.Millisecond
	h := start(t, "", func(c *Config) { c.StartDeadline, c.EndGrace = deadline, deadline })
	silent := newAgent(t, h, 1)
	silent.open()
	spec := gridSpec("silent", 2)
	spec.Parallelism = 1
	job := h.submit(spec)
	as := silent.next()
	sent := time.Now()
	c := silent.nextCancel()
	held := time.Since(sent)
	t.Logf("a node that never started its task held it %.2f s (start deadline %s)", held.Seconds(), deadline)
	if c.GetRef().GetAttempt() != as.GetRef().GetAttempt() || c.GetRef().GetTaskIndex() != as.GetRef().GetTaskIndex() {
		t.Fatalf("cancel %v, want the held attempt %v", c.GetRef(), as.GetRef())
	}
	waitFor(t, "the task to be assigned again", func() bool {
		return h.job(job.GetId()).GetTasks()[as.GetRef().GetTaskIndex()].GetAttempt() == 2
	})
	if held > deadline+2*time.Second {
		t.Errorf("the silent node held its task %s, beyond the deadline %s and the checker's period", held, deadline)
	}

	// Started, then silent past the job's timeout and the grace.
	if _, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	h.submit(func() *cloudmlv1.JobSpec {
		s := gridSpec("hung", 1)
		s.Timeout = durationpb.New(deadline)
		return s
	}())
	var hung *cloudmlv1.Assignment
	for hung == nil {
		if as := silent.next(); as.GetRef().GetJobId() != job.GetId() {
			hung = as
		}
	}
	if err := silent.report(hung.GetRef(), cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for c := silent.nextCancel(); c.GetRef().GetJobId() != hung.GetRef().GetJobId(); c = silent.nextCancel() {
	}
	held = time.Since(started)
	t.Logf("a node that never ended its task held it %.2f s (timeout %s + grace %s)", held.Seconds(), deadline, deadline)
	if held < 2*deadline {
		t.Errorf("the running task was taken back after %s, before its timeout and grace (%s)", held, 2*deadline)
	}
}
