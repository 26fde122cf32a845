package coordinator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestCancelledRunningSwarmAttemptIsStopped: cancelling a job whose swarm
// attempt runs (claimed by the worker swarm placed it on) tells that node
// to stop it and the manager to remove its service; the attempt then ends
// cancelled, and so does the job.
func TestCancelledRunningSwarmAttemptIsStopped(t *testing.T) {
	h := start(t, t.TempDir())
	mgr, wrk := formSwarm(t, h)
	job := h.submit(containerSpec("stopme", 1))
	for _, a := range []*fakeAgent{mgr, wrk} {
		a.nextOther() // StageJob
		a.reportStage(job.GetId(), "")
	}
	as := mgr.next()
	if !as.GetSwarmService() {
		t.Fatalf("assignment %v is not a swarm service", as)
	}
	ref := as.GetRef()
	if err := wrk.report(ref, running, 0, 0, nil); err != nil { // the worker claims it
		t.Fatal(err)
	}
	if task := h.job(job.GetId()).GetTasks()[0]; task.GetState() != running || task.GetNodeId() != wrk.id {
		t.Fatalf("before the cancel task is %v on %q, want running on %s", task.GetState(), task.GetNodeId(), wrk.id)
	}

	if _, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
		t.Fatal(err)
	}
	want := &cloudmlv1.Cancel{Ref: ref, Reason: "job cancelled"}
	for _, a := range []*fakeAgent{wrk, mgr} {
		got := a.nextCancel()
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("node %s got cancel (-want +got):\n%s", a.id, diff)
		}
	}

	// The worker stops the container and reports it.
	if err := wrk.report(ref, cloudmlv1.TaskState_TASK_STATE_CANCELLED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_CANCELLED)
	task := j.GetTasks()[0]
	if task.GetState() != cloudmlv1.TaskState_TASK_STATE_CANCELLED || task.GetAttempt() != 1 || task.GetNodeId() != wrk.id {
		t.Errorf("task %v attempt %d on %q, want attempt 1 cancelled on %s", task.GetState(), task.GetAttempt(), task.GetNodeId(), wrk.id)
	}
}
