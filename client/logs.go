package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// LogOptions select and shape a log stream.
type LogOptions struct {
	// Follow keeps the stream open until the job ends; without it Logs
	// returns after the output stored so far.
	Follow bool
	// OneTask restricts the stream to the task Task.
	OneTask bool
	// Task is the task index, with OneTask.
	Task int32
	// After resumes an earlier stream: of each attempt listed, only the
	// batches after its seq are sent.
	After []*cloudmlv1.LogPosition
	// Reconnect is how long Logs keeps trying to reach a coordinator that
	// went away (it restarted, or the network broke) once the stream has
	// worked; the stream resumes after the last batch delivered. 0 gives up
	// at once.
	Reconnect time.Duration
	// OnDisconnect, if set, is called once per outage, when the stream
	// broke and Logs starts reconnecting.
	OnDisconnect func(err error)
}

// Logs streams a job's output to each, batch by batch (one or more whole
// lines of one attempt and stream), until the output ends (with Follow:
// the job ends). When the coordinator goes away it reconnects with
// backoff and resumes after the last batch each returned nil for, so each
// batch arrives exactly once. It returns the job's final state
// (JOB_STATE_UNSPECIFIED without Follow). An error from each stops the
// stream and is returned.
func (c *Client) Logs(ctx context.Context, jobID string, opts LogOptions, each func(*cloudmlv1.SubscribeLogsResponse) error) (cloudmlv1.JobState, error) {
	r := logReader{jobs: c.jobs, each: each, read: map[[2]int32]uint64{},
		req: &cloudmlv1.SubscribeLogsRequest{JobId: jobID, Follow: opts.Follow, HasTask: opts.OneTask, TaskIndex: opts.Task}}
	for _, p := range opts.After {
		r.read[[2]int32{p.GetTaskIndex(), p.GetAttempt()}] = p.GetSeq()
	}
	final, err := r.run(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("logs of %s: %w", jobID, err)
	}
	return final, nil
}

// logReader reads a job's log stream and, when the stream breaks because
// the coordinator went away, opens it again after what it delivered.
type logReader struct {
	jobs cloudmlv1.JobServiceClient
	req  *cloudmlv1.SubscribeLogsRequest
	each func(*cloudmlv1.SubscribeLogsResponse) error
	read map[[2]int32]uint64 // the last seq delivered of each attempt
}

// backoff bounds the waits between reconnects.
const (
	backoffMin = 200 * time.Millisecond
	backoffMax = 5 * time.Second
)

// run delivers the stream until it ends. Once the stream has worked,
// Unavailable errors are retried with backoff for up to opts.Reconnect
// since it last worked; a coordinator that never answered is an error at
// once.
func (r *logReader) run(ctx context.Context, opts LogOptions) (cloudmlv1.JobState, error) {
	delay, lost, worked := backoffMin, time.Time{}, false
	for {
		final, progressed, err := r.once(ctx)
		if err == nil {
			return final, nil
		}
		var cb *callbackError
		if errors.As(err, &cb) {
			return 0, cb.err
		}
		if progressed {
			delay, lost, worked = backoffMin, time.Time{}, true
		}
		if !worked || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return 0, err
		}
		if lost.IsZero() {
			lost = time.Now()
			if opts.OnDisconnect != nil {
				opts.OnDisconnect(err)
			}
		}
		if time.Since(lost)+delay > opts.Reconnect {
			return 0, fmt.Errorf("%w after %s: %w", ErrGaveUp, opts.Reconnect, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		delay = min(2*delay, backoffMax)
	}
}

// once opens the stream after what was delivered and delivers it to its
// end. progressed says whether anything arrived.
func (r *logReader) once(ctx context.Context) (final cloudmlv1.JobState, progressed bool, err error) {
	req := &cloudmlv1.SubscribeLogsRequest{JobId: r.req.GetJobId(), Follow: r.req.GetFollow(),
		HasTask: r.req.GetHasTask(), TaskIndex: r.req.GetTaskIndex()}
	for k, seq := range r.read {
		req.After = append(req.After, &cloudmlv1.LogPosition{TaskIndex: k[0], Attempt: k[1], Seq: seq})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.jobs.SubscribeLogs(ctx, req)
	if err != nil {
		return 0, false, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return final, progressed, nil
		}
		if err != nil {
			return 0, progressed, err
		}
		progressed = true
		if msg.GetJobState() != cloudmlv1.JobState_JOB_STATE_UNSPECIFIED {
			final = msg.GetJobState()
		}
		if len(msg.GetData()) == 0 {
			continue
		}
		if err := r.each(msg); err != nil {
			return 0, progressed, &callbackError{err}
		}
		if msg.GetSeq() > 0 {
			r.read[[2]int32{msg.GetTaskIndex(), msg.GetAttempt()}] = msg.GetSeq()
		}
	}
}

// callbackError carries an error of the caller's each function, so that it
// is never taken for the coordinator's.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }
func (e *callbackError) Unwrap() error { return e.err }
