package coordinator

import (
	"strings"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestMultiSlotTasksFillANodeExactly: tasks of 2 CPUs take 2 slots each
// on a node of 4 while they run, so two run at once and the third waits
// until one of them ends, then takes its slots.
func TestMultiSlotTasksFillANodeExactly(t *testing.T) {
	h := start(t, t.TempDir())
	a := newAgent(t, h, 4)
	a.open()
	spec := gridSpec("wide", 3)
	spec.Resources = &cloudmlv1.Resources{Cpus: 2}
	job := h.submit(spec)
	first, second := a.next(), a.next()
	a.none()
	if r := h.job(job.GetId()).GetTasks()[2].GetReason(); !strings.Contains(r, "no node has 2 free slots (4/4 slots used") {
		t.Errorf("the third task's reason: %q, want no node with 2 free slots, 4/4 used", r)
	}
	a.run(first, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	if third := a.next(); third.GetRef().GetTaskIndex() != 2 {
		t.Fatalf("after task %d ended got %v, want task 2", first.GetRef().GetTaskIndex(), third.GetRef())
	}
	a.none()
	a.run(second, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
}

// TestASmallTaskPassesAWideOneThatWaits: a task of 2 CPUs that fits no
// node's free slots waits, and a task of 1 queued behind it still takes
// the one free slot in the same pass.
func TestASmallTaskPassesAWideOneThatWaits(t *testing.T) {
	h := start(t, t.TempDir())
	a := newAgent(t, h, 2)
	a.open()
	h.submit(gridSpec("holder", 1))
	a.next()
	wide := gridSpec("wide", 1)
	wide.Resources = &cloudmlv1.Resources{Cpus: 2}
	wj := h.submit(wide)
	small := h.submit(gridSpec("small", 1))
	if got := a.next(); got.GetRef().GetJobId() != small.GetId() {
		t.Fatalf("got %v, want the small job's task", got.GetRef())
	}
	if r := h.job(wj.GetId()).GetTasks()[0].GetReason(); !strings.Contains(r, "no node has 2 free slots") {
		t.Errorf("the wide task's reason: %q, want no node with 2 free slots", r)
	}
}
