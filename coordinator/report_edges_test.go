package coordinator

import (
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestReportTimesAreTheAgents: a report's time, when the agent sends one,
// is when the task started and ended, not when the coordinator heard.
func TestReportTimesAreTheAgents(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 1)
	n.open()
	job := h.submit(gridSpec("times", 1)).GetId()
	a := n.next()
	began := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, r := range []struct {
		state cloudmlv1.TaskState
		at    time.Time
	}{{running, began}, {cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, began.Add(time.Minute)}} {
		if _, err := n.client.ReportTask(ctxT(t), &cloudmlv1.ReportTaskRequest{Ref: a.GetRef(), State: r.state, Time: timestamppb.New(r.at)}, n.creds()); err != nil {
			t.Fatal(err)
		}
	}
	task := h.waitJob(job, cloudmlv1.JobState_JOB_STATE_SUCCEEDED).GetTasks()[0]
	if !task.GetStartTime().AsTime().Equal(began) || !task.GetEndTime().AsTime().Equal(began.Add(time.Minute)) {
		t.Errorf("task ran %v to %v, want the agent's %v to %v", task.GetStartTime().AsTime(), task.GetEndTime().AsTime(), began, began.Add(time.Minute))
	}
}

// TestEndReportedAgainByAnotherNode: the same end reported again is
// acknowledged only from the node that ran the attempt.
func TestEndReportedAgainByAnotherNode(t *testing.T) {
	h := start(t, "")
	n1, n2 := newAgent(t, h, 1), newAgent(t, h, 1)
	n1.open()
	job := h.submit(gridSpec("again", 1)).GetId()
	a := n1.next()
	n1.run(a, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	h.waitJob(job, cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	if err := n1.report(a.GetRef(), cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil); err != nil {
		t.Errorf("the same end again from its node: %v", err)
	}
	wantCode(t, n2.report(a.GetRef(), cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil), codes.FailedPrecondition)
}

// TestSubmitChecksEveryDataSource: one local path among bucket URLs in
// data is refused, whichever order the map is read in.
func TestSubmitChecksEveryDataSource(t *testing.T) {
	spec := gridSpec("data", 1)
	spec.Data = map[string]*cloudmlv1.Source{
		"a": {Url: "file:///tmp/a.tar.gz"}, "b": {Url: "file:///tmp/b.tar.gz"},
		"local": {Url: "./data"}, "z": {Url: "file:///tmp/z.tar.gz"},
	}
	for range 5 {
		if err := checkSources(spec); err == nil || !strings.Contains(err.Error(), "data.local") {
			t.Fatalf("submit with a local data path: %v, want an error naming data.local", err)
		}
	}
}

// TestConcurrentReportsKeepTheirOwnOutcome: of many reports at once, each
// call gets its own report's outcome: the ends of real attempts are all
// recorded, and reports of attempts that do not exist are refused among
// them.
func TestConcurrentReportsKeepTheirOwnOutcome(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 64)
	n.open()
	const tasks = 64
	job := h.submit(gridSpec("together", tasks)).GetId()
	var refs []*cloudmlv1.TaskRef
	for range tasks {
		refs = append(refs, n.next().GetRef())
	}
	errs := make([]error, 2*tasks)
	var wg sync.WaitGroup
	for i, r := range refs {
		wg.Go(func() { errs[i] = n.report(r, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil) })
		bogus := &cloudmlv1.TaskRef{JobId: r.GetJobId(), TaskIndex: r.GetTaskIndex(), Attempt: 7}
		wg.Go(func() { errs[tasks+i] = n.report(bogus, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, 0, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if i < tasks && err != nil {
			t.Errorf("the end of task %d: %v", i, err)
		}
		if i >= tasks {
			wantCode(t, err, codes.FailedPrecondition)
		}
	}
	j := h.waitJob(job, cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	for _, tk := range j.GetTasks() {
		if tk.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || tk.GetAttempt() != 1 {
			t.Errorf("task %d: %s after %d attempts, want SUCCEEDED after 1", tk.GetIndex(), tk.GetState(), tk.GetAttempt())
		}
	}
}

// TestReportTasksGivesEachReportItsOutcome: one ReportTasks call applies
// its reports in order, one attempt's progress and end among them, and
// answers each with its own result; a report of an attempt that does not
// exist fails alone. More reports than the limit fail the call and apply
// none; exactly the limit is one call.
func TestReportTasksGivesEachReportItsOutcome(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("batch", 2)).GetId()
	a, b := n.next(), n.next()
	stray := &cloudmlv1.TaskRef{JobId: job, TaskIndex: 7, Attempt: 1}
	succeeded := cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
	resp, err := n.client.ReportTasks(ctxT(t), &cloudmlv1.ReportTasksRequest{Reports: []*cloudmlv1.ReportTaskRequest{
		{Ref: a.GetRef(), State: running},
		{Ref: stray, State: running},
		{Ref: b.GetRef(), State: running},
		{Ref: a.GetRef(), State: succeeded},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.FailedPrecondition, codes.OK, codes.OK}
	if len(resp.GetResults()) != len(want) {
		t.Fatalf("%d results for %d reports", len(resp.GetResults()), len(want))
	}
	for i, r := range resp.GetResults() {
		if codes.Code(r.GetCode()) != want[i] {
			t.Errorf("report %d: %s (%s), want %s", i, codes.Code(r.GetCode()), r.GetMessage(), want[i])
		}
	}
	if msg := resp.GetResults()[1].GetMessage(); !strings.Contains(msg, "does not exist") {
		t.Errorf("the stray report's message %q does not say why", msg)
	}
	h.waitTaskStates(job, map[string]int32{"succeeded": 1, "running": 1})

	many := make([]*cloudmlv1.ReportTaskRequest, maxReportsPerCall+1)
	for i := range many {
		many[i] = &cloudmlv1.ReportTaskRequest{Ref: b.GetRef(), State: succeeded}
	}
	_, err = n.client.ReportTasks(ctxT(t), &cloudmlv1.ReportTasksRequest{Reports: many})
	wantCode(t, err, codes.InvalidArgument)
	if got := h.job(job).GetTasks()[1].GetState(); got != running {
		t.Errorf("task 1 is %s after a refused call, want it still running", got)
	}
	resp, err = n.client.ReportTasks(ctxT(t), &cloudmlv1.ReportTasksRequest{Reports: many[:maxReportsPerCall]})
	if err != nil {
		t.Fatalf("a call of exactly %d reports: %v", maxReportsPerCall, err)
	}
	for i, r := range resp.GetResults() {
		if codes.Code(r.GetCode()) != codes.OK {
			t.Fatalf("report %d of a full call: %s (%s), want OK: a repeated end is acknowledged", i, codes.Code(r.GetCode()), r.GetMessage())
		}
	}
	h.waitTaskStates(job, map[string]int32{"succeeded": 2})
}
