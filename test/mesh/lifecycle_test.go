package mesh

import (
	"context"
	"path/filepath"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestRetryThenSucceed: attempt 1 fails, the job's one retry succeeds, and
// the logs of both attempts are kept.
func TestRetryThenSucceed(t *testing.T) {
	root := t.TempDir()
	m := newMesh(t, filepath.Join(root, "state"))
	defer m.stop()
	m.startAgent(filepath.Join(root, "node-a"), 1)
	m.waitNodes(1)
	code := upload(t, m.bucket, codeDir(t, `echo "attempt $CLOUDML_ATTEMPT"; [ "$CLOUDML_ATTEMPT" = 2 ] || exit 3`))
	spec := &cloudmlv1.JobSpec{Name: "flaky", Code: code, Command: []string{"sh", "task.sh"}, Retries: 1}
	sub, err := m.jobs.SubmitJob(context.Background(), &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	logs, state := m.follow(sub.Job.Id)
	if state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %s", state)
	}
	if err := contains(logs[0], "attempt 1\n", "attempt 2\n"); err != nil {
		t.Error(err)
	}
	job, _ := m.jobs.GetJob(context.Background(), &cloudmlv1.GetJobRequest{JobId: sub.Job.Id})
	if tk := job.Job.Tasks[0]; tk.Attempt != 2 || tk.ExitCode != 0 {
		t.Errorf("task: attempt %d exit %d, want attempt 2 exit 0", tk.Attempt, tk.ExitCode)
	}
}

// TestRestartCarriesOn stops the coordinator and its agents mid-job, starts
// them again on the same state and work directories, and the job completes
// with the finished tasks untouched.
func TestRestartCarriesOn(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	m := newMesh(t, state)
	m.startAgent(filepath.Join(root, "node-a"), 1)
	m.waitNodes(1)
	code := upload(t, m.bucket, codeDir(t, `echo "run $CLOUDML_TASK_INDEX"; [ "$CLOUDML_TASK_INDEX" = 0 ] || sleep 0.3`))
	spec := &cloudmlv1.JobSpec{Name: "long", Code: code, Command: []string{"sh", "task.sh"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"i": {Values: []string{"0", "1", "2", "3"}}}}}
	sub, err := m.jobs.SubmitJob(context.Background(), &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	waitFor(t, "task 0 to succeed", func() bool {
		j, err := m.jobs.GetJob(context.Background(), &cloudmlv1.GetJobRequest{JobId: id})
		return err == nil && j.Job.Tasks[0].State == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
	})
	m.stop()

	m2 := newMesh(t, state)
	defer m2.stop()
	m2.startAgent(filepath.Join(root, "node-a"), 1)
	logs, st := m2.follow(id)
	if st != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job after restart ended %s", st)
	}
	for i := int32(0); i < 4; i++ {
		if err := contains(logs[i], "run "+itoa(i)); err != nil {
			t.Errorf("task %d: %v", i, err)
		}
	}
	j, _ := m2.jobs.GetJob(context.Background(), &cloudmlv1.GetJobRequest{JobId: id})
	if a := j.Job.Tasks[0].Attempt; a != 1 {
		t.Errorf("task 0 re-ran after restart: attempt %d", a)
	}
	n, _ := m2.nodes.ListNodes(context.Background(), &cloudmlv1.ListNodesRequest{})
	if len(n.Nodes) != 1 {
		t.Errorf("restarted agent registered again: %d nodes, want 1 (same identity)", len(n.Nodes))
	}
}

// TestCancelStopsRunningTasks cancels a job of long tasks.
func TestCancelStopsRunningTasks(t *testing.T) {
	root := t.TempDir()
	m := newMesh(t, filepath.Join(root, "state"))
	defer m.stop()
	m.startAgent(filepath.Join(root, "node-a"), 2)
	m.waitNodes(1)
	code := upload(t, m.bucket, codeDir(t, `echo started; sleep 60`))
	spec := &cloudmlv1.JobSpec{Name: "long", Code: code, Command: []string{"sh", "task.sh"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"i": {Values: []string{"0", "1", "2"}}}}}
	sub, err := m.jobs.SubmitJob(context.Background(), &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	waitFor(t, "two tasks running", func() bool {
		j, err := m.jobs.GetJob(context.Background(), &cloudmlv1.GetJobRequest{JobId: id})
		return err == nil && j.Job.TaskStates["running"]+j.Job.TaskStates["TASK_STATE_RUNNING"] >= 2
	})
	if _, err := m.jobs.CancelJob(context.Background(), &cloudmlv1.CancelJobRequest{JobId: id}); err != nil {
		t.Fatal(err)
	}
	_, st := m.follow(id)
	if st != cloudmlv1.JobState_JOB_STATE_CANCELLED {
		t.Errorf("job ended %s, want cancelled", st)
	}
	j, _ := m.jobs.GetJob(context.Background(), &cloudmlv1.GetJobRequest{JobId: id})
	for _, tk := range j.Job.Tasks {
		if tk.State != cloudmlv1.TaskState_TASK_STATE_CANCELLED {
			t.Errorf("task %d: %s, want cancelled", tk.Index, tk.State)
		}
	}
}
