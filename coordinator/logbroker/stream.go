package logbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Stream serves one AgentService.StreamLogs call of node: it stores one
// attempt's batches as they arrive and acknowledges them in group commits.
//
// Each stream has two goroutines. The receiver writes every request's
// batches to the attempt's segment without waiting for the disk and wakes
// the log subscribers, who read up to the written seq and so see the lines
// at once. The committer (the handler's own goroutine, the only one that
// sends) fsyncs everything written so far with one call and answers with
// the durable seq, which is also what a terminal report waits for
// (store.AckedSeq). While it syncs, the receiver goes on writing.
//
// Subscribers may therefore see lines that are not durable yet. If the
// coordinator crashes before the fsync, the restarted store cuts the
// segment's unsynced tail, and the agent, which keeps every batch until it
// is acknowledged, resends from its last acknowledgement: the same batches
// under the same seqs. A subscriber (whose stream the crash ended) that
// reads again finds the lines it saw, once each. Only if the agent is lost
// as well are the unsynced lines it saw gone from the store.
func (b *Broker) Stream(ctx context.Context, node string, stream cloudmlv1.AgentService_StreamLogsServer) error {
	ls := &logStream{b: b, node: node, ready: make(chan struct{}, 1), recvDone: make(chan struct{})}
	// The receiver ends at the latest when this handler returns: gRPC then
	// cancels the stream and its Recv fails.
	go ls.receive(stream)
	return ls.commit(ctx, stream)
}

// logStream is the state one StreamLogs call shares between its receiver
// and its committer.
type logStream struct {
	b    *Broker
	node string
	// ready is signalled after each request is written (capacity 1).
	ready chan struct{}
	// recvDone is closed when the receiver stops; err says why (io.EOF
	// when the agent closed its side).
	recvDone chan struct{}
	err      error
	// ref and started are set by the receiver before its first signal
	// and never change; the committer reads them only after a signal.
	ref     Ref
	started bool
	// asked is set by a request with no batches: the agent wants the
	// attempt's progress with the byte counts (see StreamLogsResponse).
	asked atomic.Bool
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
	r := RefOf(req.GetRef())
	if ls.started && r != ls.ref {
		return fmt.Errorf("%w: log stream of %s got a batch of %s; open one stream per attempt", ErrInvalid, ls.ref, r)
	}
	if err := ls.b.checkCall(r, req.GetBatches()); err != nil {
		return err
	}
	// Checked on every request: the attempt may be superseded mid-stream.
	if err := ls.b.jobs.AcceptLogs(ls.node, r); err != nil {
		return err
	}
	written, stored, err := ls.b.store.WriteLogs(r.Job, r.Task, r.Attempt, req.GetBatches())
	if err != nil {
		return err
	}
	if !ls.started {
		ls.ref, ls.started = r, true
	}
	if len(req.GetBatches()) == 0 {
		ls.asked.Store(true)
	}
	if stored > 0 {
		ls.b.Wake(r.Job)
	}
	if bs := req.GetBatches(); len(bs) > 0 && bs[len(bs)-1].GetSeq() > written {
		return fmt.Errorf("%w: batch %d of %s does not follow %d; resend from the acknowledged seq",
			ErrLogsIncomplete, bs[len(bs)-1].GetSeq(), r, written)
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
		case <-ls.b.cfg.Done:
			return ErrStopped
		}
		if err := ls.ack(stream, &sent); err != nil {
			return err
		}
	}
}

// ack makes everything written durable and sends the acknowledged seq if
// this stream has not sent it yet, or (asked) with the byte counts.
func (ls *logStream) ack(stream cloudmlv1.AgentService_StreamLogsServer, sent *uint64) error {
	if !ls.started {
		return nil
	}
	acked, err := ls.b.store.SyncLogs(ls.ref.Job, ls.ref.Task, ls.ref.Attempt)
	if err != nil {
		return err
	}
	asked := ls.asked.Swap(false)
	if acked <= *sent && !asked {
		return nil
	}
	*sent = max(*sent, acked)
	resp := &cloudmlv1.StreamLogsResponse{AckedSeq: acked}
	if asked {
		n, err := ls.b.store.LogBytes(ls.ref.Job, ls.ref.Task, ls.ref.Attempt, acked)
		if err != nil {
			return err
		}
		resp.StdoutBytes, resp.StderrBytes = n[cloudmlv1.LogStream_LOG_STREAM_STDOUT], n[cloudmlv1.LogStream_LOG_STREAM_STDERR]
	}
	return stream.Send(resp)
}
