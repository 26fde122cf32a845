package coordinator

import (
	"context"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// readChunk bounds how much log data one store read copies out.
const readChunk = 4 << 20

// PublishLogs stores the batches that continue the attempt's sequence.
func (s *agentServer) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	acked, err := s.c.publishLogs(id, req)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.PublishLogsResponse{AckedSeq: acked}, nil
}

func (c *Coordinator) publishLogs(node string, req *cloudmlv1.PublishLogsRequest) (uint64, error) {
	r := refFromProto(req.GetRef())
	c.mu.Lock()
	var a *store.Attempt
	if j := c.jobs[r.job]; j != nil {
		a = j.attempt(r.task, r.attempt)
	}
	if a == nil || !claimable(a, node) {
		c.mu.Unlock()
		return 0, errorf(ErrStaleAttempt, "attempt %s is not an attempt of %s", r, node)
	}
	if a.NodeID == "" {
		a.NodeID = node // a swarm attempt's logs can overtake its first report
	}
	c.mu.Unlock()
	// The store serialises writers and reads the ack inside the
	// transaction, so no coordinator lock is held across the fsync.
	acked, stored, err := c.store.AppendLogs(r.job, r.task, r.attempt, req.GetBatches())
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	if acked > a.AckedSeq {
		a.AckedSeq = acked
	}
	c.mu.Unlock()
	if stored > 0 {
		c.wake(r.job)
	}
	return acked, nil
}

// waitChan returns a channel closed at the job's next change (new logs or
// state). Take it before reading, so no change is missed.
func (c *Coordinator) waitChan(job string) <-chan struct{} {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	ch, ok := c.waiters[job]
	if !ok {
		ch = make(chan struct{})
		c.waiters[job] = ch
	}
	return ch
}

// wake wakes everyone waiting on the job.
func (c *Coordinator) wake(job string) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	if ch, ok := c.waiters[job]; ok {
		close(ch)
		delete(c.waiters, job)
	}
}

// logCursor is how far a subscriber has read one attempt.
type logCursor struct {
	task, attempt int32
	seq           uint64
}

// SubscribeLogs sends stored output, then follows new output until the job
// ended and none of its attempts is active.
func (s *jobServer) SubscribeLogs(req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	return toStatus(s.c.subscribeLogs(stream.Context(), req, stream))
}

func (c *Coordinator) subscribeLogs(ctx context.Context, req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	job := req.GetJobId()
	cursors := map[[2]int32]uint64{}
	for {
		wait := c.waitChan(job)
		attempts, done, state, err := c.logView(req)
		if err != nil {
			return err
		}
		for _, at := range attempts {
			key := [2]int32{at.task, at.attempt}
			for {
				entries, err := c.store.ReadLogs(job, at.task, at.attempt, cursors[key], readChunk)
				if err != nil {
					return err
				}
				for _, e := range entries {
					msg := &cloudmlv1.SubscribeLogsResponse{TaskIndex: at.task, Attempt: at.attempt, Stream: e.Stream, Data: e.Data}
					if err := stream.Send(msg); err != nil {
						return err
					}
					cursors[key] = e.Seq
				}
				if len(entries) == 0 || at.seq <= cursors[key] {
					break
				}
			}
		}
		if done || !req.GetFollow() {
			return stream.Send(&cloudmlv1.SubscribeLogsResponse{JobState: state})
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrShuttingDown
		}
	}
}

// logView lists the job's attempts (one task's with HasTask) with their
// acked seq, and whether the job is over: final with no active attempt.
func (c *Coordinator) logView(req *cloudmlv1.SubscribeLogsRequest) ([]logCursor, bool, cloudmlv1.JobState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[req.GetJobId()]
	if j == nil {
		return nil, false, 0, errorf(ErrNotFound, "job %q not found", req.GetJobId())
	}
	if req.GetHasTask() && (req.GetTaskIndex() < 0 || int(req.GetTaskIndex()) >= len(j.tasks)) {
		return nil, false, 0, errorf(ErrInvalid, "job %s has no task %d (it has %d)", j.rec.ID, req.GetTaskIndex(), len(j.tasks))
	}
	var out []logCursor
	for i := range j.tasks {
		if req.GetHasTask() && int32(i) != req.GetTaskIndex() {
			continue
		}
		for _, a := range j.attempts[i] {
			if a != nil && a.AckedSeq > 0 {
				out = append(out, logCursor{task: a.Task, attempt: a.Attempt, seq: a.AckedSeq})
			}
		}
	}
	done := j.final() && j.activeAttempts() == 0
	return out, done, j.rec.State, nil
}
