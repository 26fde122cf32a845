package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/coordinator/logbroker"
	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ReportTask records an attempt's progress or end.
func (s *agentServer) ReportTask(ctx context.Context, req *cloudmlv1.ReportTaskRequest) (*cloudmlv1.ReportTaskResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.c.reportTask(id, req); err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.ReportTaskResponse{}, nil
}

// ReportTasks records many reports of the calling node, each with its own
// result, acknowledged by one commit.
func (s *agentServer) ReportTasks(ctx context.Context, req *cloudmlv1.ReportTasksRequest) (*cloudmlv1.ReportTasksResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	errs, err := s.c.reportTasks(id, req.GetReports())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &cloudmlv1.ReportTasksResponse{Results: make([]*cloudmlv1.ReportResult, len(errs))}
	for i, e := range errs {
		st := status.Convert(toStatus(e))
		resp.Results[i] = &cloudmlv1.ReportResult{Code: int32(st.Code()), Message: st.Message()}
	}
	return resp, nil
}

// maxReportsPerCall bounds a ReportTasks call: an agent has a report or
// two queued per slot at most, and one call holds c.mu for all of them.
const maxReportsPerCall = 1000

// reportTask applies one report: reportTasks with one.
func (c *Coordinator) reportTask(node string, req *cloudmlv1.ReportTaskRequest) error {
	errs, err := c.reportTasks(node, []*cloudmlv1.ReportTaskRequest{req})
	if err != nil {
		return err
	}
	return errs[0]
}

// reportTasks applies node's reports in order under one hold of c.mu and
// waits for the commit that holds them all. errs[i] is reports[i]'s own
// outcome; err, when set, is the call's (the commit failed, too many
// reports), and then none of them may be taken as applied.
func (c *Coordinator) reportTasks(node string, reports []*cloudmlv1.ReportTaskRequest) (errs []error, err error) {
	if len(reports) > maxReportsPerCall {
		return nil, errorf(ErrInvalid, "%d reports in one call; send at most %d", len(reports), maxReportsPerCall)
	}
	now := time.Now()
	errs = c.carryLogs(node, reports)
	err = c.locked(func() error {
		for i, req := range reports {
			if errs[i] == nil {
				errs[i] = c.reportTaskLocked(node, req, now)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// carryLogs stores the log batches the reports carry (log_batches), durably,
// before any report is applied: a terminal report's last_log_seq is then
// met by its own batches. errs[i] is set when reports[i]'s batches were
// refused (too large) or not stored (the disk), and that report is not
// applied.
func (c *Coordinator) carryLogs(node string, reports []*cloudmlv1.ReportTaskRequest) (errs []error) {
	errs = make([]error, len(reports))
	var carried []logbroker.Carried
	var at []int
	for i, req := range reports {
		if len(req.GetLogBatches()) > 0 {
			carried = append(carried, logbroker.Carried{Ref: logbroker.RefOf(req.GetRef()), Batches: req.GetLogBatches()})
			at = append(at, i)
		}
	}
	if len(carried) == 0 {
		return errs
	}
	for k, err := range c.logs.Carry(node, carried) {
		// An attempt that no longer takes logs is the report's to answer:
		// the same end again is acknowledged (its batches were stored
		// with the first), anything else refused as stale.
		if !errors.Is(err, ErrStaleAttempt) {
			errs[at[k]] = err
		}
	}
	return errs
}

// ownAttempt returns the job and attempt r if it is the task's current
// attempt and runs on node. Callers hold c.mu.
func (c *Coordinator) ownAttempt(node string, r attemptRef) (*jobEntry, *store.Attempt, error) {
	j := c.jobs[r.job]
	if j == nil {
		return nil, nil, errorf(ErrStaleAttempt, "attempt %s: unknown job", r)
	}
	a := j.attempt(r.task, r.attempt)
	switch {
	case a == nil:
		return nil, nil, errorf(ErrStaleAttempt, "attempt %s does not exist", r)
	case !c.claimable(a, node):
		return nil, nil, errorf(ErrStaleAttempt, "attempt %s is not assigned to %s", r, node)
	case j.tasks[r.task].Attempt != r.attempt:
		return nil, nil, errorf(ErrStaleAttempt, "attempt %s was superseded by attempt %d", r, j.tasks[r.task].Attempt)
	case a.Lost:
		return nil, nil, errorf(ErrStaleAttempt, "attempt %s was given up: %s", r, a.Message)
	}
	return j, a, nil
}

// reportTaskLocked applies one report of node, received at now. Callers
// hold c.mu.
func (c *Coordinator) reportTaskLocked(node string, req *cloudmlv1.ReportTaskRequest, now time.Time) error {
	r := refFromProto(req.GetRef())
	state := req.GetState()
	at := now
	if req.GetTime() != nil {
		at = req.GetTime().AsTime()
	}
	if j := c.jobs[r.job]; j != nil {
		if a := j.attempt(r.task, r.attempt); a != nil && a.NodeID == node && !a.Lost && !a.Active() && a.State == state {
			return nil // the same end reported again, even after a retry began
		}
	}
	j, a, err := c.ownAttempt(node, r)
	if err != nil {
		return err
	}
	t := j.tasks[r.task]
	ch := newChanges()
	ended := false
	switch state {
	case cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING:
		if !a.Active() {
			return errorf(ErrStaleAttempt, "attempt %s already ended as %s", r, taskStateName(a.State))
		}
		claimed := a.Swarm && a.NodeID == ""
		if claimed {
			a.NodeID = node // the node swarm placed the service on claims it
			j.hold(t)
		}
		if state <= a.State { // late or repeated progress report
			if claimed {
				return c.commit(ch.attemptChanged(a))
			}
			return nil
		}
		a.State = state
		if a.StartTime.IsZero() {
			a.StartTime = at
		}
		if state == cloudmlv1.TaskState_TASK_STATE_RUNNING {
			j.ranOnPlatform(r.task)
		}
		t.State = state
		if j.rec.StartTime.IsZero() {
			j.rec.StartTime = at
			ch.job(j.rec)
		}
	case cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, cloudmlv1.TaskState_TASK_STATE_FAILED, cloudmlv1.TaskState_TASK_STATE_CANCELLED:
		if !a.Active() {
			if a.State == state {
				return nil // the same end reported again
			}
			return errorf(ErrStaleAttempt, "attempt %s already ended as %s", r, taskStateName(a.State))
		}
		if last := req.GetLastLogSeq(); last > 0 {
			if acked := c.ackedSeq(r); acked < last && !c.logsCapped(r) {
				return errorf(ErrLogsIncomplete, "logs incomplete: have %d of %d", acked, last)
			}
		}
		metrics, message := c.cfg.Limits.boundReport(req.GetMetrics(), req.GetMessage())
		ran := a.State == cloudmlv1.TaskState_TASK_STATE_RUNNING
		a.State = state
		a.ExitCode = req.GetExitCode()
		a.Message = message
		a.Metrics = store.Metrics(metrics)
		a.ResultsURL = req.GetResultsUrl()
		a.EndTime = at
		if a.StartTime.IsZero() {
			a.StartTime = at
		}
		if j.rec.StartTime.IsZero() {
			j.rec.StartTime = at
			ch.job(j.rec)
		}
		if platformFailure(a, ran) {
			c.platformFailed(j, t, a, now)
		} else {
			c.endTask(j, t, a)
		}
		ended = true
		c.log.Info("attempt ended", "attempt", r.String(), "state", taskStateName(state), "exit_code", a.ExitCode, "task_state", taskStateName(t.State))
		c.poke()
	default:
		return errorf(ErrInvalid, "report state must be staging, running, succeeded, failed or cancelled, got %s", state)
	}
	ch.attempt(a)
	ch.task(j, t)
	ch.updateJobState(j, now)
	if ended {
		c.serviceEnded(j, r, a)
	}
	return c.commit(ch)
}

// endTask moves a task on after its current attempt a ended: done, retried
// or failed for good. Callers hold c.mu.
func (c *Coordinator) endTask(j *jobEntry, t *store.Task, a *store.Attempt) {
	t.Note = ""
	switch {
	case a.State == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED:
		t.State = cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
		t.Reason = ""
	case j.rec.Cancelled || a.State == cloudmlv1.TaskState_TASK_STATE_CANCELLED:
		t.State = cloudmlv1.TaskState_TASK_STATE_CANCELLED
		t.Reason = "cancelled"
		if a.Message != "" {
			t.Reason = "cancelled: " + a.Message
		}
	default:
		t.Failures++
		failure := fmt.Sprintf("attempt %d failed (%s)", a.Attempt, exitText(a))
		if t.Failures <= j.spec.GetRetries() {
			t.State = cloudmlv1.TaskState_TASK_STATE_PENDING
			t.Note = "waiting to retry after " + failure
			t.Reason = t.Note
		} else {
			t.State = cloudmlv1.TaskState_TASK_STATE_FAILED
			t.Reason = failure
			if j.spec.GetRetries() > 0 {
				t.Reason = fmt.Sprintf("%s; no retries left (%d allowed)", failure, j.spec.GetRetries())
			}
		}
	}
}

// platformFailure reports whether a, which just ended, failed on the
// platform's side rather than in the user's code: a swarm attempt that
// failed before its command ran (no manager, a failed service create, a
// task swarm could not start or a daemon that went away). Such a failure
// uses none of the task's retries.
//
// A command that cannot start ("exec: "x": executable file not found", a
// missing script) also fails before it runs, but it is the user's: it
// counts against the retries like a non-zero exit.
func platformFailure(a *store.Attempt, ran bool) bool {
	return a.Swarm && !ran && a.State == cloudmlv1.TaskState_TASK_STATE_FAILED &&
		!strings.Contains(a.Message, userCommandUnstartable)
}

// userCommandUnstartable is how the container runtime says it could not
// execute the task's command (not found, not executable).
const userCommandUnstartable = "unable to start container process: exec:"

// maxPlatformFailures bounds the platform failures in a row a task may
// have: with the backoff about three minutes of a broken platform, after
// which the task fails with the last error rather than waiting forever.
const maxPlatformFailures = 10

// platformFailed puts the task of a, a platform failure, back in the queue
// with no retry used; it is placed again after a backoff that grows with
// each platform failure in a row (platformBackoff), so a platform that
// stays broken is not asked again in a tight loop. Callers hold c.mu.
func (c *Coordinator) platformFailed(j *jobEntry, t *store.Task, a *store.Attempt, now time.Time) {
	if j.rec.Cancelled {
		c.endTask(j, t, a)
		return
	}
	if j.platformFails[t.Index]+1 >= maxPlatformFailures {
		t.State = cloudmlv1.TaskState_TASK_STATE_FAILED
		t.Note = ""
		t.Reason = fmt.Sprintf("attempt %d failed on the platform's side, %d times in a row (%s); check the nodes with `cloudml-client cluster nodes` and the coordinator's log",
			a.Attempt, maxPlatformFailures, exitText(a))
		c.log.Error("platform failures in a row; task failed", "attempt", refOf(a).String(), "error", a.Message)
		return
	}
	wait := j.platformRetry(t.Index, now)
	t.State = cloudmlv1.TaskState_TASK_STATE_PENDING
	t.Note = fmt.Sprintf("attempt %d failed on the platform's side (%s; no retry used)", a.Attempt, exitText(a))
	t.Reason = fmt.Sprintf("%s; placing it again in %s", t.Note, wait)
	c.log.Warn("platform failure; task queued again", "attempt", refOf(a).String(), "error", a.Message, "backoff", wait)
}

// ackedSeq is the highest log seq of the attempt that is durable, which
// its terminal report waits for; 0 when it cannot be read (the report is
// then refused as incomplete, and the agent retries).
func (c *Coordinator) ackedSeq(r attemptRef) uint64 {
	acked, err := c.store.AckedSeq(r.job, r.task, r.attempt)
	if err != nil {
		c.log.Warn("read log state failed", "attempt", r.String(), "error", err)
	}
	return acked
}

// logsCapped reports whether the attempt's logs reached the per-attempt
// limit: the rest of them is dropped, so none is missing.
func (c *Coordinator) logsCapped(r attemptRef) bool {
	capped, err := c.store.LogsCapped(r.job, r.task, r.attempt)
	if err != nil {
		c.log.Warn("read log state failed", "attempt", r.String(), "error", err)
	}
	return capped
}

// exitText is "exit 1" or "exit 1: message".
func exitText(a *store.Attempt) string {
	s := fmt.Sprintf("exit %d", a.ExitCode)
	if a.Message != "" {
		s += ": " + a.Message
	}
	return s
}
