package coordinator

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestGetResultsOrdering(t *testing.T) {
	for _, tc := range []struct {
		name      string
		objective *cloudmlv1.Objective
		want      *cloudmlv1.Objective
		order     []int32
	}{
		// No objective: the first metric name in sorted order ("loss"), minimised.
		{"minimise", nil, &cloudmlv1.Objective{Metric: "loss"}, []int32{1, 3, 0, 2}},
		{"maximise", &cloudmlv1.Objective{Metric: "loss", Maximize: true}, &cloudmlv1.Objective{Metric: "loss", Maximize: true}, []int32{0, 1, 3, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, "")
			n := newAgent(t, h, 4)
			n.open()
			spec := gridSpec("res", 4)
			spec.Objective = tc.objective
			job := h.submit(spec)
			metrics := map[int32]map[string]float64{
				0: {"loss": 0.9, "zeta": 0},
				1: {"loss": 0.1, "zeta": 5},
				2: {"zeta": 1}, // no loss: last
				3: {"loss": 0.1},
			}
			for range 4 {
				a := n.next()
				n.run(a, succeeded, 0, metrics[a.GetRef().GetTaskIndex()])
			}
			h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
			res, err := h.jobs.GetResults(ctxT(t), &cloudmlv1.GetResultsRequest{JobId: job.GetId()})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, res.GetObjective(), protocmp.Transform()); diff != "" {
				t.Errorf("objective (-want +got):\n%s", diff)
			}
			var order []int32
			for _, r := range res.GetRows() {
				order = append(order, r.GetTaskIndex())
				if r.GetAttempt() != 1 || r.GetState() != succeeded || r.GetResultsUrl() == "" || r.GetParams()["x"] == "" {
					t.Errorf("row %v lacks attempt, state, params or results url", r)
				}
			}
			if diff := cmp.Diff(tc.order, order); diff != "" {
				t.Errorf("row order (-want +got):\n%s", diff)
			}
			if res.GetOutput() != h.cfg.DefaultBucket || res.GetJobState() != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
				t.Errorf("output %q state %v", res.GetOutput(), res.GetJobState())
			}
		})
	}
}

func TestCancelJob(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("cancel", 4))
	runningA, assignedA := n.next(), n.next()
	if err := n.report(runningA.GetRef(), running, 0, 0, nil); err != nil {
		t.Fatal(err)
	}
	stream, err := h.jobs.SubscribeLogs(ctxT(t), &cloudmlv1.SubscribeLogsRequest{JobId: job.GetId(), Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	j := resp.GetJob()
	if j.GetState() != cloudmlv1.JobState_JOB_STATE_CANCELLED || j.GetEndTime() == nil {
		t.Errorf("job after cancel: state %v end %v, want cancelled at once", j.GetState(), j.GetEndTime())
	}
	want := map[int32]cloudmlv1.TaskState{
		runningA.GetRef().GetTaskIndex():  running, // until the agent says it stopped
		assignedA.GetRef().GetTaskIndex(): cloudmlv1.TaskState_TASK_STATE_CANCELLED,
		2:                                 cloudmlv1.TaskState_TASK_STATE_CANCELLED,
		3:                                 cloudmlv1.TaskState_TASK_STATE_CANCELLED,
	}
	for _, task := range j.GetTasks() {
		if task.GetState() != want[task.GetIndex()] {
			t.Errorf("task %d state %v, want %v", task.GetIndex(), task.GetState(), want[task.GetIndex()])
		}
	}
	// The assigned attempt, cancelled before it started, ends with exit
	// code -1 (it has no process) and "job cancelled".
	if at := j.GetTasks()[assignedA.GetRef().GetTaskIndex()]; at.GetExitCode() != -1 || at.GetReason() != "cancelled with its job" || at.GetEndTime() == nil {
		t.Errorf("cancelled assigned attempt: exit %d, reason %q, end %v; want -1, \"cancelled with its job\", an end time", at.GetExitCode(), at.GetReason(), at.GetEndTime())
	}
	got := map[int32]bool{}
	for range 2 {
		c := n.nextCancel()
		got[c.GetRef().GetTaskIndex()] = true
	}
	if !got[runningA.GetRef().GetTaskIndex()] || !got[assignedA.GetRef().GetTaskIndex()] {
		t.Errorf("cancels sent for %v, want both active attempts", got)
	}
	// The follower ends only once the running attempt has stopped.
	if err := n.report(runningA.GetRef(), cloudmlv1.TaskState_TASK_STATE_CANCELLED, -1, 0, nil); err != nil {
		t.Fatal(err)
	}
	_, state := readAll(t, stream)
	if state != cloudmlv1.JobState_JOB_STATE_CANCELLED {
		t.Errorf("follow ended with %v", state)
	}
	if r := h.job(job.GetId()).GetTasks()[runningA.GetRef().GetTaskIndex()].GetReason(); r != "cancelled" {
		t.Errorf("a running task stopped with no message has reason %q, want \"cancelled\"", r)
	}
	wantCode(t, n.report(assignedA.GetRef(), running, 0, 0, nil), codes.FailedPrecondition)
	n.none()
	again, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()})
	if err != nil || again.GetJob().GetState() != cloudmlv1.JobState_JOB_STATE_CANCELLED {
		t.Errorf("cancelling again: %v, %v", again.GetJob().GetState(), err)
	}
}

func TestUnknownJobIsNotFound(t *testing.T) {
	h := start(t, "")
	ctx := ctxT(t)
	const id = "ghost-000000"
	_, err := h.jobs.GetJob(ctx, &cloudmlv1.GetJobRequest{JobId: id})
	wantCode(t, err, codes.NotFound)
	_, err = h.jobs.CancelJob(ctx, &cloudmlv1.CancelJobRequest{JobId: id})
	wantCode(t, err, codes.NotFound)
	_, err = h.jobs.GetResults(ctx, &cloudmlv1.GetResultsRequest{JobId: id})
	wantCode(t, err, codes.NotFound)
	for _, follow := range []bool{false, true} {
		stream, err := h.jobs.SubscribeLogs(ctx, &cloudmlv1.SubscribeLogsRequest{JobId: id, Follow: follow})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.NotFound)
	}
}

func TestInvalidSpecStoresNothing(t *testing.T) {
	h := start(t, "")
	noCommand := gridSpec("bad", 1)
	noCommand.Command = nil
	zero := gridSpec("zero", 1)
	zero.Sweep.Grid["x"].Values = nil
	localCode := gridSpec("local", 1)
	localCode.Code = &cloudmlv1.Source{Url: "./code"}
	for name, spec := range map[string]*cloudmlv1.JobSpec{"nil": nil, "no command": noCommand, "zero tasks": zero, "local code": localCode} {
		_, err := h.jobs.SubmitJob(ctxT(t), &cloudmlv1.SubmitJobRequest{Spec: spec})
		if code := codeOf(err); code != codes.InvalidArgument {
			t.Errorf("%s: code %v (%v), want InvalidArgument", name, code, err)
		}
	}
	list, err := h.jobs.ListJobs(ctxT(t), &cloudmlv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetJobs()) != 0 {
		t.Errorf("invalid submits stored jobs: %v", list.GetJobs())
	}
}

func TestListJobsNewestFirstWithCounts(t *testing.T) {
	h := start(t, "")
	a := h.submit(gridSpec("first", 2))
	b := h.submit(gridSpec("second", 3))
	list, err := h.jobs.ListJobs(ctxT(t), &cloudmlv1.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range list.GetJobs() {
		ids = append(ids, j.GetId())
		if len(j.GetTasks()) != 0 {
			t.Errorf("ListJobs returned tasks of %s", j.GetId())
		}
	}
	if diff := cmp.Diff([]string{b.GetId(), a.GetId()}, ids); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if got := list.GetJobs()[0].GetTaskStates()["pending"]; got != 3 {
		t.Errorf("pending count = %d, want 3", got)
	}
	info, err := h.cluster.GetClusterInfo(ctxT(t), &cloudmlv1.GetClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &cloudmlv1.GetClusterInfoResponse{DefaultBucket: h.cfg.DefaultBucket, Provider: "none", Version: "test"}
	if diff := cmp.Diff(want, info, protocmp.Transform()); diff != "" {
		t.Errorf("cluster info (-want +got):\n%s", diff)
	}
}
