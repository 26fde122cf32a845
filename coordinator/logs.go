package coordinator

import (
	"context"
	"fmt"

	"github.com/cloudml/cloudml/coordinator/logbroker"
	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Logs are the log broker's (coordinator/logbroker): it stores, syncs and
// fans out output with its own state and lock. The coordinator serves its
// RPCs and answers its questions about jobs (logJobs) under c.mu.

// PublishLogs stores the batches that continue the attempt's sequence.
func (s *agentServer) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	acked, err := s.c.logs.Publish(id, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.PublishLogsResponse{AckedSeq: acked}, nil
}

// StreamLogs stores one attempt's batches as they arrive and acknowledges
// them in group commits (logbroker.Broker.Stream).
func (s *agentServer) StreamLogs(stream cloudmlv1.AgentService_StreamLogsServer) error {
	id, err := nodeIDFrom(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	return toStatus(s.c.logs.Stream(stream.Context(), id, stream))
}

// SubscribeLogs sends stored output, then follows new output until the job
// ended and none of its attempts is active.
func (s *jobServer) SubscribeLogs(req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	return toStatus(s.c.logs.Subscribe(stream.Context(), req, stream))
}

// logCapNote is the line that ends an attempt's logs cut at limit bytes.
func logCapNote(limit int64) string {
	return fmt.Sprintf("[cloudml] this attempt's logs reached the coordinator's limit of %d bytes per attempt: the rest is not shown here, "+
		"but its results keep the whole output (logs/stdout.log, logs/stderr.log); raise the limit with `coordinator serve --max-log-bytes`\n", limit)
}

// logJobs is the job store as the log broker sees it (logbroker.Jobs).
type logJobs struct{ c *Coordinator }

// AcceptLogs returns ErrStaleAttempt unless node may send logs of r now:
// r is the task's current attempt, runs on node and was not given up.
func (l logJobs) AcceptLogs(node string, lr logbroker.Ref) error {
	c := l.c
	r := attemptRef{lr.Job, lr.Task, lr.Attempt}
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[r.job]
	var a *store.Attempt
	if j != nil {
		a = j.attempt(r.task, r.attempt)
	}
	switch {
	case a == nil || !c.claimable(a, node):
		return errorf(ErrStaleAttempt, "attempt %s is not an attempt of %s", r, node)
	case a.Lost:
		return errorf(ErrStaleAttempt, "attempt %s was given up (%s): its logs are not wanted", r, a.Message)
	case j.tasks[r.task].Attempt != r.attempt:
		return errorf(ErrStaleAttempt, "attempt %s was superseded by attempt %d", r, j.tasks[r.task].Attempt)
	}
	if a.NodeID == "" {
		a.NodeID = node // a swarm attempt's logs can overtake its first report
		j.hold(j.tasks[r.task])
	}
	return nil
}

// HasJob reports whether the coordinator knows job.
func (l logJobs) HasJob(job string) bool {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[job] != nil
}

// LogView lists the job's attempts (one task's with HasTask), and whether
// the job is over: final with no active attempt. It answers once what it
// shows is durable.
func (l logJobs) LogView(req *cloudmlv1.SubscribeLogsRequest) (v logbroker.View, err error) {
	c := l.c
	err = c.locked(func() error {
		j := c.jobs[req.GetJobId()]
		if j == nil {
			return errorf(ErrNotFound, "job %q not found", req.GetJobId())
		}
		if req.GetHasTask() && (req.GetTaskIndex() < 0 || int(req.GetTaskIndex()) >= len(j.tasks)) {
			return errorf(ErrInvalid, "job %s has no task %d (it has %d)", j.rec.ID, req.GetTaskIndex(), len(j.tasks))
		}
		for i := range j.tasks {
			if req.GetHasTask() && int32(i) != req.GetTaskIndex() {
				continue
			}
			for _, a := range j.attempts[i] {
				if a != nil {
					v.Attempts = append(v.Attempts, logbroker.Ref{Job: a.JobID, Task: a.Task, Attempt: a.Attempt})
				}
			}
		}
		v.Done, v.State = j.final() && j.activeAttempts() == 0, j.rec.State
		return nil
	})
	return v, err
}
