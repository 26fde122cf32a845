package coordinator

import (
	"testing"

	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestCountingAttempt: a task's result row comes from its latest succeeded
// attempt, even when a later one exists, else from its current attempt.
func TestCountingAttempt(t *testing.T) {
	att := func(n int32, s cloudmlv1.TaskState) *store.Attempt {
		return &store.Attempt{Attempt: n, State: s}
	}
	ok, failed := cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, cloudmlv1.TaskState_TASK_STATE_FAILED
	j := &jobEntry{
		tasks: []*store.Task{{Index: 0, Attempt: 3}, {Index: 1, Attempt: 2}, {Index: 2, Attempt: 2}},
		attempts: [][]*store.Attempt{
			{att(1, ok), att(2, failed), att(3, failed)},
			{att(1, failed), att(2, failed)},
			{nil, att(2, ok)},
		},
	}
	for task, want := range map[int32]int32{0: 1, 1: 2, 2: 2} {
		if a := countingAttempt(j, task); a == nil || a.Attempt != want {
			t.Errorf("task %d counts attempt %v, want %d", task, a, want)
		}
	}
}

// TestAttemptOutOfRange: a reference past the job's tasks or attempts (a
// report from a confused or hostile agent) finds nothing.
func TestAttemptOutOfRange(t *testing.T) {
	j := &jobEntry{attempts: [][]*store.Attempt{{{Attempt: 1}}}}
	for _, r := range [][2]int32{{-1, 1}, {1, 1}, {0, 0}, {0, 2}} {
		if a := j.attempt(r[0], r[1]); a != nil {
			t.Errorf("attempt(%d, %d) = %v, want nil", r[0], r[1], a)
		}
	}
	if a := j.attempt(0, 1); a == nil {
		t.Error("attempt(0, 1) = nil")
	}
}

// TestViewForRedactsOthersEnv: a job's env values are its submitter's to
// see (an admin's, for a job of no known submitter); anyone else sees the
// names only.
func TestViewForRedactsOthersEnv(t *testing.T) {
	for _, tt := range []struct {
		owner  string
		caller pki.Identity
		sees   bool
	}{
		{"alice", pki.Identity{Name: "alice", Role: pki.RoleClient}, true},
		{"alice", pki.Identity{Name: "bob", Role: pki.RoleClient}, false},
		{"alice", pki.Identity{Name: "root", Role: pki.RoleAdmin}, false},
		{"", pki.Identity{Name: "root", Role: pki.RoleAdmin}, true},
		{"", pki.Identity{Name: "", Role: pki.RoleClient}, false},
	} {
		pj := &cloudmlv1.Job{Owner: tt.owner, Spec: &cloudmlv1.JobSpec{Env: map[string]string{"TOKEN": "s3cret"}}}
		got := viewFor(pj, tt.caller).GetSpec().GetEnv()["TOKEN"]
		if (got == "s3cret") != tt.sees || (!tt.sees && got != redacted) {
			t.Errorf("owner %q, caller %+v: TOKEN reads %q, want visible %v", tt.owner, tt.caller, got, tt.sees)
		}
	}
}

// TestDeriveStateMixedEnds: a job whose tasks all ended, some succeeded
// and some failed, failed; with one still running it runs.
func TestDeriveStateMixedEnds(t *testing.T) {
	ok, failed, run := cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, cloudmlv1.TaskState_TASK_STATE_FAILED, cloudmlv1.TaskState_TASK_STATE_RUNNING
	for _, tt := range []struct {
		states []cloudmlv1.TaskState
		want   cloudmlv1.JobState
	}{
		{[]cloudmlv1.TaskState{ok, failed}, cloudmlv1.JobState_JOB_STATE_FAILED},
		{[]cloudmlv1.TaskState{failed, ok, ok}, cloudmlv1.JobState_JOB_STATE_FAILED},
		{[]cloudmlv1.TaskState{ok, ok}, cloudmlv1.JobState_JOB_STATE_SUCCEEDED},
		{[]cloudmlv1.TaskState{ok, run}, cloudmlv1.JobState_JOB_STATE_RUNNING},
	} {
		j := &jobEntry{rec: &store.Job{}}
		for i, s := range tt.states {
			j.tasks = append(j.tasks, &store.Task{Index: int32(i), State: s})
		}
		if got := j.deriveState(); got != tt.want {
			t.Errorf("tasks %v: job %v, want %v", tt.states, got, tt.want)
		}
	}
}
