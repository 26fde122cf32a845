package coordinator

import (
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const codesFailedPrecondition = codes.FailedPrecondition

const (
	running   = cloudmlv1.TaskState_TASK_STATE_RUNNING
	succeeded = cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
	failed    = cloudmlv1.TaskState_TASK_STATE_FAILED
	pending   = cloudmlv1.TaskState_TASK_STATE_PENDING
)

func indexes(as []*cloudmlv1.Assignment) []int32 {
	var out []int32
	for _, a := range as {
		out = append(out, a.GetRef().GetTaskIndex())
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func TestGridPlacedLeastLoadedWithReasons(t *testing.T) {
	h := start(t, "")
	n1, n2 := newAgent(t, h, 2), newAgent(t, h, 2)
	n1.open()
	n2.open()
	spec := gridSpec("grid", 6)
	spec.Env = map[string]string{"A": "1"}
	job := h.submit(spec)
	if job.GetTaskCount() != 6 || len(job.GetTasks()) != 6 {
		t.Fatalf("job has %d tasks (%d listed), want 6", job.GetTaskCount(), len(job.GetTasks()))
	}
	if !strings.HasPrefix(job.GetId(), "grid-") || len(job.GetId()) != len("grid-")+6 {
		t.Errorf("job id %q is not name-xxxxxx", job.GetId())
	}
	if job.GetOutput() != h.cfg.DefaultBucket {
		t.Errorf("output = %q, want the default bucket %q", job.GetOutput(), h.cfg.DefaultBucket)
	}

	a1 := []*cloudmlv1.Assignment{n1.next(), n1.next()}
	a2 := []*cloudmlv1.Assignment{n2.next(), n2.next()}
	// Least loaded, ties by node id: 0→node-1, 1→node-2, 2→node-1, 3→node-2.
	if diff := cmp.Diff([]int32{0, 2}, indexes(a1)); diff != "" {
		t.Errorf("node-1 tasks (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int32{1, 3}, indexes(a2)); diff != "" {
		t.Errorf("node-2 tasks (-want +got):\n%s", diff)
	}
	as := a1[0]
	if as.GetTaskCount() != 6 || as.GetParams()["x"] != "0" || as.GetOutput() != h.cfg.DefaultBucket ||
		as.GetEnv()["A"] != "1" || as.GetCode().GetUrl() != spec.Code.Url || len(as.GetCommand()) != 2 {
		t.Errorf("assignment lacks job fields: %v", as)
	}

	j := h.job(job.GetId())
	for _, task := range j.GetTasks()[4:] {
		if task.GetState() != pending || task.GetReason() != "all 2 nodes busy (4/4 slots used)" {
			t.Errorf("task %d: state %v reason %q, want pending: all 2 nodes busy (4/4 slots used)", task.GetIndex(), task.GetState(), task.GetReason())
		}
	}
	if j.GetState() != cloudmlv1.JobState_JOB_STATE_PENDING {
		t.Errorf("job state before any start = %v, want pending", j.GetState())
	}

	n1.run(a1[0], succeeded, 0, nil)
	if got := h.job(job.GetId()).GetState(); got != cloudmlv1.JobState_JOB_STATE_RUNNING {
		t.Errorf("job state after a task ran = %v, want running", got)
	}
	next := n1.next() // the freed slot takes task 4
	if next.GetRef().GetTaskIndex() != 4 {
		t.Errorf("freed slot got task %d, want 4", next.GetRef().GetTaskIndex())
	}
	n1.run(a1[1], succeeded, 0, nil)
	last := n1.next() // node-2 is still full, so task 5 goes to node-1 too
	if last.GetRef().GetTaskIndex() != 5 {
		t.Errorf("next task = %d, want 5", last.GetRef().GetTaskIndex())
	}
	n1.run(next, succeeded, 0, nil)
	n1.run(last, succeeded, 0, nil)
	for _, a := range a2 {
		n2.run(a, succeeded, 0, nil)
	}
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)

	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 2 || nodes.GetNodes()[0].GetId() != "node-1" || nodes.GetNodes()[1].GetRunningTasks() != 0 {
		t.Errorf("ListNodes = %v", nodes.GetNodes())
	}
}

func TestParallelismRespected(t *testing.T) {
	h := start(t, "")
	n1, n2 := newAgent(t, h, 2), newAgent(t, h, 2)
	n1.open()
	n2.open()
	spec := gridSpec("par", 5)
	spec.Parallelism = 3
	job := h.submit(spec)
	got := []*cloudmlv1.Assignment{n1.next(), n1.next(), n2.next()}
	waitFor(t, "pending reasons", func() bool {
		j := h.job(job.GetId())
		return j.GetTasks()[3].GetReason() == "job parallelism 3 reached" && j.GetTasks()[4].GetReason() == "job parallelism 3 reached"
	})
	n1.none()
	n2.none()
	n1.run(got[0], succeeded, 0, nil)
	// One attempt ended, so exactly one more may start: on node-2 (one free
	// slot) or node-1 (one free slot); node-1 wins the tie.
	fourth := n1.next()
	if fourth.GetRef().GetTaskIndex() != 3 {
		t.Errorf("next task = %d, want 3", fourth.GetRef().GetTaskIndex())
	}
	if r := h.job(job.GetId()).GetTasks()[4].GetReason(); r != "job parallelism 3 reached" {
		t.Errorf("task 4 reason = %q", r)
	}
}

func TestPendingReasons(t *testing.T) {
	h := start(t, "")
	job := h.submit(gridSpec("lonely", 1))
	waitFor(t, "no nodes reason", func() bool {
		return h.job(job.GetId()).GetTasks()[0].GetReason() == "no nodes registered"
	})
	n := newAgent(t, h, 2)
	n.open()
	n.next()
	big := gridSpec("big", 1)
	big.Resources = &cloudmlv1.Resources{Cpus: 2.5}
	bj := h.submit(big)
	waitFor(t, "too big reason", func() bool {
		return h.job(bj.GetId()).GetTasks()[0].GetReason() == "needs 3 slots; the largest node has 2"
	})
}

func TestRetryAfterFailure(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	spec := gridSpec("retry", 1)
	spec.Retries = 1
	job := h.submit(spec)
	first := n.next()
	if first.GetRef().GetAttempt() != 1 {
		t.Fatalf("first attempt = %d", first.GetRef().GetAttempt())
	}
	// A second node keeps the retry from being placed at once, so the
	// pending reason can be read.
	blocker := h.submit(gridSpec("blocker", 1))
	n.run(first, failed, 1, nil)
	second := n.next()
	if second.GetRef().GetTaskIndex() != 0 || second.GetRef().GetAttempt() != 2 || second.GetRef().GetJobId() != job.GetId() {
		// FIFO by creation: the retried task of the older job goes first.
		t.Fatalf("after the failure the node got %v, want attempt 2 of task 0 of %s", second.GetRef(), job.GetId())
	}
	j := h.job(blocker.GetId())
	if r := j.GetTasks()[0].GetReason(); r != "all 1 nodes busy (1/1 slots used)" {
		t.Errorf("blocker reason = %q", r)
	}
	n.run(second, succeeded, 0, map[string]float64{"loss": 1})
	j = h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	if task := j.GetTasks()[0]; task.GetAttempt() != 2 || task.GetState() != succeeded || task.GetMetrics()["loss"] != 1 {
		t.Errorf("task = %v, want attempt 2 succeeded with loss 1", task)
	}
	n.run(n.next(), failed, 3, nil)
	j = h.waitJob(blocker.GetId(), cloudmlv1.JobState_JOB_STATE_FAILED)
	if r := j.GetTasks()[0].GetReason(); r != "attempt 1 failed (exit 3)" {
		t.Errorf("failed task reason = %q", r)
	}
}

func TestRetryReasonWhilePending(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	spec := gridSpec("retry", 1)
	spec.Retries = 2
	job := h.submit(spec)
	first := n.next()
	n.closeSession() // no node is connected: the retry has to wait
	n.open()
	resent := n.next()
	if resent.GetRef().GetAttempt() != 1 {
		t.Fatalf("reconnect resent %v, want attempt 1", resent.GetRef())
	}
	n.closeSession()
	if err := n.report(first.GetRef(), running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.report(first.GetRef(), failed, 1, 0, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retry reason", func() bool {
		task := h.job(job.GetId()).GetTasks()[0]
		return task.GetState() == pending && task.GetReason() == "waiting to retry after attempt 1 failed (exit 1); none of the 1 registered nodes is connected"
	})
}

func TestReportFromOtherNodeIsFailedPrecondition(t *testing.T) {
	h := start(t, "")
	n1, n2 := newAgent(t, h, 1), newAgent(t, h, 1)
	n1.open()
	job := h.submit(gridSpec("own", 1))
	as := n1.next()
	wantCode(t, n2.report(as.GetRef(), running, 0, 0, nil), codesFailedPrecondition)
	_, err := n2.publish(as.GetRef(), &cloudmlv1.LogBatch{Seq: 1, Data: []byte("x\n")})
	wantCode(t, err, codesFailedPrecondition)
	stale := &cloudmlv1.TaskRef{JobId: job.GetId(), TaskIndex: 0, Attempt: 2}
	wantCode(t, n1.report(stale, running, 0, 0, nil), codesFailedPrecondition)
	unknown := &cloudmlv1.TaskRef{JobId: "nope-000000", TaskIndex: 0, Attempt: 1}
	wantCode(t, n1.report(unknown, running, 0, 0, nil), codesFailedPrecondition)
	n1.run(as, succeeded, 0, nil)
	// The same terminal report again is fine; a different one is not.
	if err := n1.report(as.GetRef(), succeeded, 0, 1, nil); err != nil {
		t.Errorf("repeated terminal report: %v", err)
	}
	wantCode(t, n1.report(as.GetRef(), failed, 1, 1, nil), codesFailedPrecondition)
}

// TestEveryQueuedTaskSaysWhyItWaits: behind a full cluster each pending
// task of each queued job says why it waits, the last as much as the
// first (a pass says it once per job rather than writing it into every
// task), and a task placed later no longer says it.
func TestEveryQueuedTaskSaysWhyItWaits(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	h.submit(gridSpec("first", 1))
	first := n.next()
	queued := []*cloudmlv1.Job{h.submit(gridSpec("second", 3)), h.submit(gridSpec("third", 70))}
	const want = "all 1 nodes busy (1/1 slots used)"
	waitFor(t, "every queued task to say why it waits", func() bool {
		for _, job := range queued {
			for _, task := range h.job(job.GetId()).GetTasks() {
				if task.GetState() != pending || task.GetReason() != want {
					return false
				}
			}
		}
		return true
	})
	n.run(first, succeeded, 0, nil)
	next := n.next()
	if next.GetRef().GetJobId() != queued[0].GetId() || next.GetRef().GetTaskIndex() != 0 {
		t.Fatalf("after the first job got %v, want task 0 of %s", next.GetRef(), queued[0].GetId())
	}
	tasks := h.job(queued[0].GetId()).GetTasks()
	if tasks[0].GetReason() != "" || tasks[1].GetReason() != want || tasks[2].GetReason() != want {
		t.Errorf("reasons once task 0 was placed: %q, %q, %q; want none, then %q twice",
			tasks[0].GetReason(), tasks[1].GetReason(), tasks[2].GetReason(), want)
	}
}
