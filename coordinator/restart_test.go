package coordinator

import (
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestRestartKeepsJobsLogsAndIdentity(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	n := newAgent(t, h, 3)
	n.open()
	spec := gridSpec("durable", 3)
	job := h.submit(spec)
	as := map[int32]*cloudmlv1.Assignment{}
	for range 3 {
		a := n.next()
		as[a.GetRef().GetTaskIndex()] = a
	}
	n.run(as[0], succeeded, 0, map[string]float64{"loss": 0.5})
	for _, i := range []int32{1, 2} {
		if err := n.report(as[i].GetRef(), running, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := n.publish(as[i].GetRef(), batch(1, "before restart\n")); err != nil {
			t.Fatal(err)
		}
	}
	id, cred := n.id, n.cred
	n.close()
	h.stop()

	h2 := start(t, dir)
	j := h2.job(job.GetId())
	if j.GetState() != cloudmlv1.JobState_JOB_STATE_RUNNING || j.GetTasks()[0].GetState() != succeeded ||
		j.GetTasks()[0].GetMetrics()["loss"] != 0.5 || j.GetTasks()[1].GetState() != running {
		t.Fatalf("job after restart = %v", j)
	}
	msgs, _ := h2.jobLogs(job.GetId())
	if len(msgs) != 3 {
		t.Errorf("after restart %d log batches, want 3", len(msgs))
	}

	// The agent comes back with its credential: still running task 1, but
	// task 2 was lost when it restarted.
	back := rejoin(t, h2, id, cred)
	back.open(as[1].GetRef())
	if back.started.GetNodeId() != id {
		t.Errorf("rejoined as %q, want %q", back.started.GetNodeId(), id)
	}
	if err := back.report(as[1].GetRef(), succeeded, 0, 1, nil); err != nil {
		t.Fatalf("report of the surviving attempt: %v", err)
	}
	again := back.next()
	if again.GetRef().GetTaskIndex() != 2 || again.GetRef().GetAttempt() != 2 {
		t.Fatalf("rescheduled %v, want task 2 attempt 2", again.GetRef())
	}
	back.run(again, succeeded, 0, nil) // retries = 0: the lost attempt did not count
	h2.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	nodes, err := h2.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 1 || nodes.GetNodes()[0].GetState() != cloudmlv1.NodeState_NODE_STATE_READY {
		t.Errorf("nodes after restart = %v", nodes.GetNodes())
	}
}

func TestRestartedNodeThatNeverReturnsGoesDown(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	old := newAgent(t, h, 1)
	old.open()
	job := h.submit(gridSpec("orphan", 1))
	a := old.next()
	if err := old.report(a.GetRef(), running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	old.close()
	h.stop()

	h2 := start(t, dir)
	fresh := newAgent(t, h2, 1)
	fresh.open()
	h2.silence(old.id) // it never comes back
	b := fresh.next()
	if b.GetRef().GetAttempt() != 2 || fresh.id == old.id {
		t.Fatalf("fresh node %s got %v, want attempt 2 of the orphaned task", fresh.id, b.GetRef())
	}
	fresh.run(b, succeeded, 0, nil)
	h2.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
}
