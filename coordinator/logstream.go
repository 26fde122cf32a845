package coordinator

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// StreamLogs stores one attempt's batches as they arrive and acknowledges
// them in group commits.
//
// Each stream has two goroutines. The receiver writes every request's
// batches to the attempt's segment without waiting for the disk and wakes
// the log subscribers, who read up to the written seq and so see the lines
// at once. The committer (the handler's own goroutine, the only one that
// sends) fsyncs everything written so far with one call and answers with
// the durable seq, which is also what a terminal report waits for
// (store.Attempt.AckedSeq). While it syncs, the receiver goes on writing.
//
// Subscribers may therefore see lines that are not durable yet. If the
// coordinator crashes before the fsync, the restarted store cuts the
// segment's unsynced tail, and the agent, which keeps every batch until it
// is acknowledged, resends from its last acknowledgement: the same batches
// under the same seqs. A subscriber (whose stream the crash ended) that
// reads again finds the lines it saw, once each. Only if the agent is lost
// as well are the unsynced lines it saw gone from the store.
func (s *agentServer) StreamLogs(stream cloudmlv1.AgentService_StreamLogsServer) error {
	id, err := nodeIDFrom(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	return toStatus(s.c.streamLogs(stream.Context(), id, stream))
}

// logStream is the state one StreamLogs call shares between its receiver
// and its committer.
type logStream struct {
	c    *Coordinator
	node string
	// ready is signalled after each request is written (capacity 1).
	ready chan struct{}
	// recvDone is closed when the receiver stops; err says why (io.EOF
	// when the agent closed its side).
	recvDone chan struct{}
	err      error
	// ref and a are set by the receiver before its first signal and
	// never change; the committer reads them only after a signal.
	ref attemptRef
	a   *store.Attempt
	// asked is set by a request with no batches: the agent wants the
	// attempt's progress with the byte counts (see StreamLogsResponse).
	asked atomic.Bool
}

func (c *Coordinator) streamLogs(ctx context.Context, node string, stream cloudmlv1.AgentService_StreamLogsServer) error {
	ls := &logStream{c: c, node: node, ready: make(chan struct{}, 1), recvDone: make(chan struct{})}
	// The receiver ends at the latest when this handler returns: gRPC then
	// cancels the stream and its Recv fails.
	go ls.receive(stream)
	return ls.commit(ctx, stream)
}

// receive writes each request's batches until the stream ends or a
// request is refused.
func (ls *logStream) receive(stream cloudmlv1.AgentService_StreamLogsServer) {
	defer close(ls.recvDone)
	for {
		req, err := stream.Recv()
		if err == nil {
			err = ls.write(req)
		}
		if err != nil {
			ls.err = err
			return
		}
		select {
		case ls.ready <- struct{}{}:
		default:
		}
	}
}

// write stores a request's batches that continue the attempt's written
// sequence. Duplicates are skipped; a gap ends the stream (after what came
// before it is stored), and the agent resends from its acknowledged seq.
func (ls *logStream) write(req *cloudmlv1.StreamLogsRequest) error {
	r := refFromProto(req.GetRef())
	if ls.a != nil && r != ls.ref {
		return errorf(ErrInvalid, "log stream of %s got a batch of %s; open one stream per attempt", ls.ref, r)
	}
	if err := ls.c.checkLogCall(r, req.GetBatches()); err != nil {
		return err
	}
	// Checked on every request: the attempt may be superseded mid-stream.
	a, err := ls.c.logAttempt(ls.node, r)
	if err != nil {
		return err
	}
	written, stored, err := ls.c.store.WriteLogs(r.job, r.task, r.attempt, req.GetBatches())
	if err != nil {
		return err
	}
	if ls.a == nil {
		ls.ref, ls.a = r, a
	}
	if len(req.GetBatches()) == 0 {
		ls.asked.Store(true)
	}
	if stored > 0 {
		ls.c.wake(r.job)
	}
	if bs := req.GetBatches(); len(bs) > 0 && bs[len(bs)-1].GetSeq() > written {
		return errorf(ErrLogsIncomplete, "logs incomplete: batch %d of %s does not follow %d; resend from the acknowledged seq",
			bs[len(bs)-1].GetSeq(), r, written)
	}
	return nil
}

// commit syncs and acknowledges what the receiver wrote, once per wake-up,
// until the receiver stops; then it commits a last time and ends the
// stream with the receiver's reason.
func (ls *logStream) commit(ctx context.Context, stream cloudmlv1.AgentService_StreamLogsServer) error {
	var sent uint64
	for {
		select {
		case <-ls.ready:
		case <-ls.recvDone:
			if err := ls.ack(stream, &sent); err != nil {
				return err
			}
			if errors.Is(ls.err, io.EOF) {
				return nil
			}
			return ls.err
		case <-ctx.Done():
			return ctx.Err()
		case <-ls.c.done:
			return ErrShuttingDown
		}
		if err := ls.ack(stream, &sent); err != nil {
			return err
		}
	}
}

// ack makes everything written durable and sends the acknowledged seq if
// this stream has not sent it yet, or (asked) with the byte counts.
func (ls *logStream) ack(stream cloudmlv1.AgentService_StreamLogsServer, sent *uint64) error {
	if ls.a == nil {
		return nil
	}
	acked, err := ls.c.store.SyncLogs(ls.ref.job, ls.ref.task, ls.ref.attempt)
	if err != nil {
		return err
	}
	ls.c.setAcked(ls.a, acked)
	asked := ls.asked.Swap(false)
	if acked <= *sent && !asked {
		return nil
	}
	*sent = max(*sent, acked)
	resp := &cloudmlv1.StreamLogsResponse{AckedSeq: acked}
	if asked {
		n, err := ls.c.store.LogBytes(ls.ref.job, ls.ref.task, ls.ref.attempt, acked)
		if err != nil {
			return err
		}
		resp.StdoutBytes, resp.StderrBytes = n[cloudmlv1.LogStream_LOG_STREAM_STDOUT], n[cloudmlv1.LogStream_LOG_STREAM_STDERR]
	}
	return stream.Send(resp)
}
