package coordinator

import (
	"context"
	"fmt"

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
	if err := c.checkLogCall(r, req.GetBatches()); err != nil {
		return 0, err
	}
	a, err := c.logAttempt(node, r)
	if err != nil {
		return 0, err
	}
	// The store serialises writers and reads the ack inside the
	// transaction, so no coordinator lock is held across the fsync.
	acked, stored, err := c.store.AppendLogs(r.job, r.task, r.attempt, req.GetBatches())
	if err != nil {
		return 0, err
	}
	c.setAcked(a, acked)
	if stored > 0 {
		c.wake(r.job)
	}
	return acked, nil
}

// checkLogCall refuses a call (or stream message) whose batches carry more
// than Limits.LogCallBytes of data. (Their records' headers count in the
// per-attempt limit.)
func (c *Coordinator) checkLogCall(r attemptRef, batches []*cloudmlv1.LogBatch) error {
	n := 0
	for _, b := range batches {
		n += len(b.GetData())
	}
	if limit := c.cfg.Limits.LogCallBytes; n > limit {
		return errorf(ErrTooLarge, "logs of %s: %d batches with %d bytes of data, more than the limit of %d bytes per call", r, len(batches), n, limit)
	}
	return nil
}

// logCapNote is the line that ends an attempt's logs cut at limit bytes.
func logCapNote(limit int64) string {
	return fmt.Sprintf("[cloudml] this attempt's logs reached the coordinator's limit of %d bytes per attempt: the rest is not shown here, "+
		"but its results keep the whole output (logs/stdout.log, logs/stderr.log); raise the limit with `coordinator serve --max-log-bytes`\n", limit)
}

// logAttempt returns the attempt a node sends logs for, or ErrStaleAttempt
// when the coordinator no longer wants them from that node.
func (c *Coordinator) logAttempt(node string, r attemptRef) (*store.Attempt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a *store.Attempt
	if j := c.jobs[r.job]; j != nil {
		a = j.attempt(r.task, r.attempt)
	}
	switch {
	case a == nil || !c.claimable(a, node):
		return nil, errorf(ErrStaleAttempt, "attempt %s is not an attempt of %s", r, node)
	case a.Lost:
		return nil, errorf(ErrStaleAttempt, "attempt %s was given up (%s): its logs are not wanted", r, a.Message)
	case c.jobs[r.job].tasks[r.task].Attempt != r.attempt:
		return nil, errorf(ErrStaleAttempt, "attempt %s was superseded by attempt %d", r, c.jobs[r.job].tasks[r.task].Attempt)
	}
	if a.NodeID == "" {
		a.NodeID = node // a swarm attempt's logs can overtake its first report
	}
	return a, nil
}

// setAcked records the attempt's durable log seq, which a terminal report
// waits for.
func (c *Coordinator) setAcked(a *store.Attempt, acked uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if acked > a.AckedSeq {
		a.AckedSeq = acked
	}
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

// logAttempt names one attempt whose logs a subscriber reads.
type logAttempt struct {
	task, attempt int32
}

// SubscribeLogs sends stored output, then follows new output until the job
// ended and none of its attempts is active.
func (s *jobServer) SubscribeLogs(req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	return toStatus(s.c.subscribeLogs(stream.Context(), req, stream))
}

func (c *Coordinator) subscribeLogs(ctx context.Context, req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	job := req.GetJobId()
	cursors := map[[2]int32]uint64{}
	for _, p := range req.GetAfter() { // a client resuming a broken stream
		cursors[[2]int32{p.GetTaskIndex(), p.GetAttempt()}] = p.GetSeq()
	}
	// One read buffer for the whole subscription: Send has copied an
	// entry's data by the time it returns.
	var buf []byte
	for {
		wait := c.waitChan(job)
		attempts, done, state, err := c.logView(req)
		if err != nil {
			return err
		}
		for _, at := range attempts {
			key := [2]int32{at.task, at.attempt}
			// Read up to what is written, durable or not yet (see
			// streamLogs): a chunk at a time until nothing is left.
			for {
				entries, used, err := c.store.ReadLogsInto(buf, job, at.task, at.attempt, cursors[key], readChunk)
				if err != nil {
					if !c.hasJob(job) { // deleted under the reader: say so, not "no such file"
						err = deletedWhileRead(job)
					}
					return err
				}
				buf = used
				for _, e := range entries {
					msg := &cloudmlv1.SubscribeLogsResponse{TaskIndex: at.task, Attempt: at.attempt, Stream: e.Stream, Data: e.Data, Seq: e.Seq}
					if err := stream.Send(msg); err != nil {
						return err
					}
					cursors[key] = e.Seq
				}
				if len(entries) == 0 {
					break
				}
			}
		}
		if done || !req.GetFollow() {
			// Only an ended job can be deleted; one deleted while read
			// would read as empty, and the end must not claim all was sent.
			if !c.hasJob(job) {
				return deletedWhileRead(job)
			}
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

// deletedWhileRead is the error of a subscription whose job was deleted
// under it.
func deletedWhileRead(job string) error {
	return errorf(ErrNotFound, "job %s was deleted while its logs were being read; what was printed may be incomplete", job)
}

// hasJob reports whether the coordinator knows job.
func (c *Coordinator) hasJob(job string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[job] != nil
}

// logView lists the job's attempts (one task's with HasTask), and whether
// the job is over: final with no active attempt. The store knows how far
// each attempt's logs go.
func (c *Coordinator) logView(req *cloudmlv1.SubscribeLogsRequest) (out []logAttempt, done bool, state cloudmlv1.JobState, err error) {
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
					out = append(out, logAttempt{task: a.Task, attempt: a.Attempt})
				}
			}
		}
		done, state = j.final() && j.activeAttempts() == 0, j.rec.State
		return nil
	})
	if err != nil {
		return nil, false, 0, err
	}
	return out, done, state, nil
}
