package coordinator

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stageAll answers the StageJob each node gets for job.
func stageAll(t *testing.T, job string, agents ...*fakeAgent) {
	t.Helper()
	for _, a := range agents {
		if st := a.nextOther().GetStageJob(); st.GetJobId() != job {
			t.Fatalf("node %s got %v, want StageJob of %s", a.id, st, job)
		}
		a.reportStage(job, "")
	}
}

// TestSwarmFormedAgainAfterItsNodesLeftIt: the nodes come back outside any
// swarm (their daemons were replaced, as when a coordinator on the netns
// provider restarts): the coordinator forgets the old manager, has the
// swarm founded and joined again, stages again, and runs the lost attempts
// again without using a retry (the job allows none).
func TestSwarmFormedAgainAfterItsNodesLeftIt(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("again", 2)).GetId()
	stageAll(t, job, mgr, wrk)
	claimed, unclaimed := mgr.next(), mgr.next()
	if err := wrk.report(claimed.GetRef(), cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}

	mgr.reportSwarm(&cloudmlv1.ReportSwarmRequest{}) // in no swarm
	if init := mgr.nextOther().GetSwarmInit(); init.GetAdvertiseAddr() != "10.0.0.11" {
		t.Fatalf("the old manager, in no swarm, got %v; want SwarmInit", init)
	}
	wrk.reportSwarm(&cloudmlv1.ReportSwarmRequest{})
	mgr.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-3", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.11:2377", WorkerJoinToken: "SWMTKN-1-new"})
	if join := wrk.nextOther().GetSwarmJoin(); join.GetJoinToken() != "SWMTKN-1-new" {
		t.Fatalf("the worker, in no swarm, got join %v; want the new swarm's token", join)
	}
	wrk.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-4", Role: cloudmlv1.SwarmRole_SWARM_ROLE_WORKER})

	stageAll(t, job, mgr, wrk) // the new daemons have nothing staged
	for range 2 {
		as := mgr.next()
		if as.GetRef().GetAttempt() != 2 {
			t.Fatalf("after the swarm was formed again got %v, want attempt 2", as.GetRef())
		}
		wrk.run(as, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	}
	h.waitJob(job, cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	for _, ref := range []*cloudmlv1.TaskRef{claimed.GetRef(), unclaimed.GetRef()} {
		err := wrk.report(ref, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil)
		wantCode(t, err, codes.FailedPrecondition) // attempt 1 was given up
	}
}

// TestPlatformFailureUsesNoRetry: a swarm attempt that fails before its
// command ran (here: its manager is no manager) is placed again with no
// retry used; an attempt whose command fails uses one (none allowed here).
func TestPlatformFailureUsesNoRetry(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("platform", 1)).GetId()
	stageAll(t, job, mgr, wrk)
	first := mgr.next()
	if err := mgr.report(first.GetRef(), cloudmlv1.TaskState_TASK_STATE_FAILED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	second := mgr.next()
	if second.GetRef().GetAttempt() != 2 {
		t.Fatalf("got %v, want attempt 2", second.GetRef())
	}
	wrk.run(second, cloudmlv1.TaskState_TASK_STATE_FAILED, 1, nil)
	j := h.waitJob(job, cloudmlv1.JobState_JOB_STATE_FAILED)
	if r := j.GetTasks()[0].GetReason(); !strings.Contains(r, "attempt 2 failed (exit 1") {
		t.Errorf("reason %q, want attempt 2's exit", r)
	}
}

// TestPlatformBackoff: the wait after platform failures in a row doubles
// from platformBackoffMin up to platformBackoffMax.
func TestPlatformBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 50: 30 * time.Second} {
		if got := platformBackoff(n); got != want {
			t.Errorf("platformBackoff(%d) = %s, want %s", n, got, want)
		}
	}
	j := &jobEntry{}
	now := time.Now()
	j.platformRetry(0, now)
	if d := j.platformRetry(0, now); d != 2*time.Second || j.heldBack(0, now) != 2*time.Second || j.heldBack(1, now) != 0 {
		t.Errorf("second failure waits %s, held back %s; task 1 held back %s", d, j.heldBack(0, now), j.heldBack(1, now))
	}
	if j.heldBack(0, now.Add(2*time.Second)) != 0 {
		t.Errorf("still held back once the backoff ended")
	}
	j.ranOnPlatform(0)
	if d := j.platformRetry(0, now); d != time.Second {
		t.Errorf("after an attempt ran, the next failure waits %s, want %s", d, time.Second)
	}
}

// TestRestartTrustsNoStoredSwarm: after the coordinator restarts, the
// stored manager gets no service before its agent reports its swarm; when
// the agents report none (their daemons went with the old coordinator, as
// on the netns provider), the swarm is formed again and the running
// attempt is run again with no retry used.
func TestRestartTrustsNoStoredSwarm(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("restarted", 1)).GetId()
	stageAll(t, job, mgr, wrk)
	first := mgr.next()
	if err := wrk.report(first.GetRef(), cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	mgr.close()
	wrk.close()
	h.stop()

	h2 := start(t, dir)
	mgr2, wrk2 := rejoin(t, h2, mgr.id, mgr.cred), rejoin(t, h2, wrk.id, wrk.cred)
	mgr2.open()
	wrk2.open()
	wrk2.reportSwarm(&cloudmlv1.ReportSwarmRequest{}) // its attempt is lost: the task waits again
	waitFor(t, "a reason naming the unconfirmed manager", func() bool {
		return strings.Contains(h2.job(job).GetTasks()[0].GetReason(), "waiting for the swarm manager "+mgr.id+" to report its swarm")
	})
	mgr2.reportSwarm(&cloudmlv1.ReportSwarmRequest{})
	if init := mgr2.nextOther().GetSwarmInit(); init == nil {
		t.Fatalf("the stored manager, in no swarm, got no SwarmInit")
	}
	mgr2.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-5", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.11:2377", WorkerJoinToken: "SWMTKN-1-after"})
	if join := wrk2.nextOther().GetSwarmJoin(); join.GetJoinToken() != "SWMTKN-1-after" {
		t.Fatalf("the worker got join %v, want the new swarm's token", join)
	}
	wrk2.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-6", Role: cloudmlv1.SwarmRole_SWARM_ROLE_WORKER})
	stageAll(t, job, mgr2, wrk2)
	again := mgr2.next()
	if again.GetRef().GetAttempt() != 2 {
		t.Fatalf("got %v, want attempt 2", again.GetRef())
	}
	wrk2.run(again, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	h2.waitJob(job, cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
}

// TestPlatformFailuresAreBounded: a task is placed again after each
// platform failure until maxPlatformFailures in a row, then fails with the
// last error; a command the runtime cannot start is the user's failure.
func TestPlatformFailuresAreBounded(t *testing.T) {
	c := &Coordinator{log: hclog.NewNullLogger()}
	j := &jobEntry{rec: &store.Job{}, spec: &cloudmlv1.JobSpec{}}
	task := &store.Task{}
	now := time.Now()
	for n := 1; n <= maxPlatformFailures; n++ {
		a := &store.Attempt{Attempt: int32(n), Swarm: true, State: cloudmlv1.TaskState_TASK_STATE_FAILED, Message: "this node is not a swarm manager"}
		if !platformFailure(a, false) {
			t.Fatal("a failure before the command ran is not a platform failure")
		}
		c.platformFailed(j, task, a, now)
		want := cloudmlv1.TaskState_TASK_STATE_PENDING
		if n == maxPlatformFailures {
			want = cloudmlv1.TaskState_TASK_STATE_FAILED
		}
		if task.State != want {
			t.Fatalf("after %d platform failures the task is %s, want %s (%s)", n, taskStateName(task.State), taskStateName(want), task.Reason)
		}
	}
	if !strings.Contains(task.Reason, "10 times in a row") || !strings.Contains(task.Reason, "not a swarm manager") {
		t.Errorf("reason %q, want the count and the last error", task.Reason)
	}
	unstartable := &store.Attempt{Swarm: true, State: cloudmlv1.TaskState_TASK_STATE_FAILED,
		Message: `starting container failed: OCI runtime create failed: runc create failed: unable to start container process: exec: "octve": executable file not found in $PATH: unknown`}
	if platformFailure(unstartable, false) {
		t.Error("a command that cannot start counts as a platform failure; it is the user's and uses a retry")
	}
	if platformFailure(&store.Attempt{Swarm: true, State: cloudmlv1.TaskState_TASK_STATE_FAILED}, true) {
		t.Error("an attempt whose command ran and failed counts as a platform failure")
	}
}

// TestPlatformBackoffResetsOnceAnAttemptRan: platform failures count in a
// row; an attempt whose command ran starts the count again.
func TestPlatformBackoffResetsOnceAnAttemptRan(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("reset", 1)
	spec.Retries = 1
	job := h.submit(spec).GetId()
	stageAll(t, job, mgr, wrk)
	reason := func() string { return h.job(job).GetTasks()[0].GetReason() }
	first := mgr.next()
	if err := mgr.report(first.GetRef(), cloudmlv1.TaskState_TASK_STATE_FAILED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if r := reason(); !strings.Contains(r, "again in 1s") {
		t.Fatalf("after one platform failure: %q", r)
	}
	second := mgr.next()
	if err := wrk.report(second.GetRef(), running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := wrk.report(second.GetRef(), cloudmlv1.TaskState_TASK_STATE_FAILED, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	third := mgr.next()
	if third.GetRef().GetAttempt() != 3 {
		t.Fatalf("got %v, want attempt 3 (the retry)", third.GetRef())
	}
	if err := mgr.report(third.GetRef(), cloudmlv1.TaskState_TASK_STATE_FAILED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	if r := reason(); !strings.Contains(r, "again in 1s") {
		t.Errorf("a platform failure after an attempt ran: %q, want the backoff started again at 1s", r)
	}
}

// TestContainerJobParallelism: a container job with parallelism 2 has at
// most two services at a time; the third task waits for one to end.
func TestContainerJobParallelism(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("parallel", 3)
	spec.Parallelism = 2
	job := h.submit(spec).GetId()
	stageAll(t, job, mgr, wrk)
	first := mgr.next()
	mgr.next()
	mgr.none()
	if r := h.job(job).GetTasks()[2].GetReason(); !strings.Contains(r, "job parallelism 2 reached") {
		t.Errorf("the third task's reason %q, want the parallelism", r)
	}
	wrk.run(first, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	if third := mgr.next(); third.GetRef().GetTaskIndex() != 2 {
		t.Errorf("after one ended got %v, want task 2", third.GetRef())
	}
	mgr.none()
}

// TestRestageBackoffGrows: a node whose staging failed is asked again
// after 1s, then, failing again, after 2s; another node waits on its own.
func TestRestageBackoffGrows(t *testing.T) {
	j := &jobEntry{}
	t0 := time.Now()
	steps := []struct {
		node string
		at   time.Duration
		want bool
	}{
		{"a", 0, false},                       // first failure: wait 1s
		{"a", 999 * time.Millisecond, false},  // not yet
		{"b", 999 * time.Millisecond, false},  // b's first failure: its own 1s
		{"a", time.Second, true},              // due: stage again
		{"a", time.Second, false},             // failed again: wait 2s
		{"a", 2999 * time.Millisecond, false}, // not yet
		{"b", 1999 * time.Millisecond, true},  // b is due on its own clock
		{"a", 3 * time.Second, true},          // due after 2s
	}
	for i, s := range steps {
		if got := j.restageAt(s.node, t0.Add(s.at)); got != s.want {
			t.Fatalf("step %d: restageAt(%s, +%s) = %v, want %v", i, s.node, s.at, got, s.want)
		}
	}
	if !j.restaging("a") || j.restaging("c") {
		t.Error("restaging: a failed, c did not")
	}
}

// TestSwarmStagingAndSize: while its nodes stage, a container job's task
// says on how many; a task needing as many CPUs as the largest node has
// slots is placed.
func TestSwarmStagingAndSize(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	spec := containerSpec("size", 1)
	spec.Resources = &cloudmlv1.Resources{Cpus: 2} // the nodes have 2 slots
	job := h.submit(spec).GetId()
	for _, a := range []*fakeAgent{mgr, wrk} {
		if st := a.nextOther().GetStageJob(); st.GetJobId() != job {
			t.Fatalf("node %s got %v, want StageJob of %s", a.id, st, job)
		}
	}
	if r := h.job(job).GetTasks()[0].GetReason(); r != "staging code and data on 2 of 2 swarm nodes" {
		t.Errorf("reason while staging %q", r)
	}
	mgr.reportStage(job, "")
	wrk.reportStage(job, "")
	if a := mgr.next(); a.GetRef().GetJobId() != job {
		t.Errorf("got %v, want the task placed", a.GetRef())
	}
}

// TestServicesRemovedInBatches: ended services of a job still running are
// removed serviceRemovalBatch at a time, as soon as a batch is full.
func TestServicesRemovedInBatches(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("batches", serviceRemovalBatch+2)).GetId()
	stageAll(t, job, mgr, wrk)
	for i := 0; i < serviceRemovalBatch; i++ {
		if i == serviceRemovalBatch-1 { // one short of a batch: nothing removed yet
			mgr.barrier()
			if n := len(mgr.cancels); n != 0 {
				t.Fatalf("%d services removed after %d ended, want none before a batch of %d", n, i, serviceRemovalBatch)
			}
		}
		wrk.run(mgr.next(), cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	}
	for i := 0; i < serviceRemovalBatch; i++ {
		if c := mgr.nextCancel(); c.GetRef().GetJobId() != job {
			t.Fatalf("cancel %d: %v", i, c)
		}
	}
}
