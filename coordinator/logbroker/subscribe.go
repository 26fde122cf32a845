package logbroker

import (
	"context"
	"fmt"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// readChunk bounds how much log data one store read copies out.
const readChunk = 4 << 20

// Subscribe sends the job's stored output (after the request's cursors),
// then, with Follow, new output as it is written, until the job ended and
// none of its attempts is active; the last message carries the job's state.
func (b *Broker) Subscribe(ctx context.Context, req *cloudmlv1.SubscribeLogsRequest, stream cloudmlv1.JobService_SubscribeLogsServer) error {
	job := req.GetJobId()
	cursors := map[Ref]uint64{}
	for _, p := range req.GetAfter() { // a client resuming a broken stream
		cursors[Ref{job, p.GetTaskIndex(), p.GetAttempt()}] = p.GetSeq()
	}
	// One read buffer for the whole subscription: Send has copied an
	// entry's data by the time it returns.
	var buf []byte
	for {
		wait := b.waitChan(job)
		view, err := b.jobs.LogView(req)
		if err != nil {
			return err
		}
		for _, at := range view.Attempts {
			// Read up to what is written, durable or not yet (see
			// Stream): a chunk at a time until nothing is left.
			for {
				entries, used, err := b.store.ReadLogsInto(buf, job, at.Task, at.Attempt, cursors[at], readChunk)
				if err != nil {
					if !b.jobs.HasJob(job) { // deleted under the reader: say so, not "no such file"
						err = deletedWhileRead(job)
					}
					return err
				}
				buf = used
				for _, e := range entries {
					msg := &cloudmlv1.SubscribeLogsResponse{TaskIndex: at.Task, Attempt: at.Attempt, Stream: e.Stream, Data: e.Data, Seq: e.Seq}
					if err := stream.Send(msg); err != nil {
						return err
					}
					cursors[at] = e.Seq
				}
				if len(entries) == 0 {
					break
				}
			}
		}
		if view.Done || !req.GetFollow() {
			// Only an ended job can be deleted; one deleted while read
			// would read as empty, and the end must not claim all was sent.
			if !b.jobs.HasJob(job) {
				return deletedWhileRead(job)
			}
			return stream.Send(&cloudmlv1.SubscribeLogsResponse{JobState: view.State})
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.cfg.Done:
			return ErrStopped
		}
	}
}

// deletedWhileRead is the error of a subscription whose job was deleted
// under it.
func deletedWhileRead(job string) error {
	return fmt.Errorf("%w: job %s was deleted while its logs were being read; what was printed may be incomplete", ErrNotFound, job)
}
