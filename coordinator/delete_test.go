package coordinator

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// A job can be deleted only once it has ended; then it is gone, with its
// logs, for good (also after a restart), and other jobs are untouched.
func TestDeleteJob(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("gone", 2))
	kept := h.submit(gridSpec("kept", 1))
	first := n.next()
	n.run(first, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)

	_, err := h.jobs.DeleteJob(ctxT(t), &cloudmlv1.DeleteJobRequest{JobId: job.GetId()})
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(status.Convert(err).Message(), "cloudml-client cancel "+job.GetId()) {
		t.Errorf("refusal %q does not say how to stop the job", status.Convert(err).Message())
	}
	for range 2 {
		as := n.next()
		n.run(as, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	}
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	logDir := filepath.Join(dir, "logs", job.GetId())
	if _, err := os.Stat(logDir); err != nil {
		t.Fatalf("the job's logs are not where the test looks: %v", err)
	}

	resp, err := h.jobs.DeleteJob(ctxT(t), &cloudmlv1.DeleteJobRequest{JobId: job.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetJob().GetState() != cloudmlv1.JobState_JOB_STATE_SUCCEEDED || resp.GetLogBytesFreed() == 0 {
		t.Errorf("delete answered %v, %d bytes freed; want the succeeded job and its log bytes", resp.GetJob().GetState(), resp.GetLogBytesFreed())
	}
	if _, err := os.Stat(logDir); !os.IsNotExist(err) {
		t.Errorf("log directory after the delete: %v, want it gone", err)
	}
	gone := func(h *harness) {
		t.Helper()
		_, err := h.jobs.GetJob(ctxT(t), &cloudmlv1.GetJobRequest{JobId: job.GetId()})
		wantCode(t, err, codes.NotFound)
		_, err = h.jobs.DeleteJob(ctxT(t), &cloudmlv1.DeleteJobRequest{JobId: job.GetId()})
		wantCode(t, err, codes.NotFound)
		if ids := h.jobIDs(); !slices.Equal(ids, []string{kept.GetId()}) {
			t.Errorf("jobs listed: %v, want only %s", ids, kept.GetId())
		}
	}
	gone(h)
	h.stop()
	gone(start(t, dir))
}

// deletingStream is a SubscribeLogs stream whose first Send deletes the
// job, as a `delete` racing a reader would.
type deletingStream struct {
	grpc.ServerStream
	ctx   context.Context
	del   func()
	sends int
}

func (s *deletingStream) Context() context.Context { return s.ctx }

func (s *deletingStream) Send(*cloudmlv1.SubscribeLogsResponse) error {
	s.sends++
	if s.sends == 1 {
		s.del()
	}
	return nil
}

// A reader of a job deleted under it is told so (NOT_FOUND), not handed
// a file error.
func TestDeleteJobUnderALogReader(t *testing.T) {
	h := start(t, "")
	n := newAgent(t, h, 2)
	n.open()
	job := h.submit(gridSpec("read", 2))
	for range 2 {
		n.run(n.next(), cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, 0, nil)
	}
	h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	stream := &deletingStream{ctx: ctxT(t), del: func() {
		if _, _, err := h.c.deleteJob(job.GetId()); err != nil {
			t.Errorf("delete: %v", err)
		}
	}}
	err := toStatus(h.c.logs.Subscribe(ctxT(t), &cloudmlv1.SubscribeLogsRequest{JobId: job.GetId(), Follow: true}, stream))
	wantCode(t, err, codes.NotFound)
	if msg := status.Convert(err).Message(); !strings.Contains(msg, job.GetId()) {
		t.Errorf("message %q does not name the job", msg)
	}
}

// TestJobOrderFollowsSubmitsAndDeletes: the order the scheduler and
// ListJobs walk jobs in is kept as jobs come and go rather than sorted on
// each walk; it stays every job, oldest first, across a delete from the
// middle, a restart and a submit after it (the package's tests check it
// against a sort on every walk).
func TestJobOrderFollowsSubmitsAndDeletes(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir)
	var ids []string
	for _, name := range []string{"one", "two", "three"} {
		job := h.submit(gridSpec(name, 1))
		ids = append(ids, job.GetId())
		if _, err := h.jobs.CancelJob(ctxT(t), &cloudmlv1.CancelJobRequest{JobId: job.GetId()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.jobs.DeleteJob(ctxT(t), &cloudmlv1.DeleteJobRequest{JobId: ids[1]}); err != nil {
		t.Fatal(err)
	}
	if got, want := h.jobIDs(), []string{ids[2], ids[0]}; !slices.Equal(got, want) {
		t.Errorf("jobs after deleting the middle one: %v, want %v", got, want)
	}
	h.stop()
	h = start(t, dir)
	four := h.submit(gridSpec("four", 1))
	if got, want := h.jobIDs(), []string{four.GetId(), ids[2], ids[0]}; !slices.Equal(got, want) {
		t.Errorf("jobs after a restart and a submit: %v, want %v", got, want)
	}
}
