package coordinator

import (
	"fmt"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestRetriesExhausted: a task allowed N retries that fails N+1 times is
// failed for good after exactly N+1 attempts, with a reason naming the
// retries used up; no attempt N+2 is made.
func TestRetriesExhausted(t *testing.T) {
	for _, retries := range []int32{1, 2} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			h := start(t, "")
			n := newAgent(t, h, 1)
			n.open()
			spec := gridSpec("exhaust", 1)
			spec.Retries = retries
			job := h.submit(spec)
			for want := int32(1); want <= retries+1; want++ {
				as := n.next()
				if got := as.GetRef(); got.GetJobId() != job.GetId() || got.GetTaskIndex() != 0 || got.GetAttempt() != want {
					t.Fatalf("assignment %v, want attempt %d of task 0 of %s", got, want, job.GetId())
				}
				n.run(as, failed, 7, nil)
			}
			// The barrier: a later job's task. The scheduler serves the
			// older job first, so had the failed task one more attempt
			// coming, the node would get it before this one.
			later := h.submit(gridSpec("later", 1))
			if got := n.next().GetRef(); got.GetJobId() != later.GetId() {
				t.Fatalf("after %d failures the node got %v, want the later job's task", retries+1, got)
			}
			j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_FAILED)
			task := j.GetTasks()[0]
			if task.GetState() != failed || task.GetAttempt() != retries+1 || task.GetExitCode() != 7 {
				t.Errorf("task state %v attempt %d exit %d, want failed at attempt %d with exit 7",
					task.GetState(), task.GetAttempt(), task.GetExitCode(), retries+1)
			}
			want := fmt.Sprintf("attempt %d failed (exit 7); no retries left (%d allowed)", retries+1, retries)
			if got := task.GetReason(); got != want {
				t.Errorf("reason = %q, want %q", got, want)
			}
		})
	}
}
