package attempt

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/agent/backoff"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrRejected means the coordinator answered FAILED_PRECONDITION: it no
// longer wants the attempt, which is then stopped and dropped.
var ErrRejected = errors.New("coordinator no longer wants this attempt")

// Client is the part of the AgentService client an attempt uses.
type Client interface {
	ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error)
	PublishLogs(ctx context.Context, in *cloudmlv1.PublishLogsRequest, opts ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error)
	StreamLogs(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error)
}

// ReportLogser is a Client that can say whether the coordinator takes log
// batches in reports (SessionStarted.report_logs).
type ReportLogser interface {
	ReportLogs() bool
}

// carryBytes is how much of a short attempt's output may ride its end
// report: carryLimit when the coordinator takes logs in reports, else 0.
func (a *Attempt) carryBytes() int {
	if c, ok := a.cfg.Client.(ReportLogser); ok && c.ReportLogs() {
		return carryLimit
	}
	return 0
}

// carryLimit bounds the output an end report carries: a few screens of a
// short task, small beside the coordinator's 8 MiB per call, and the
// node's batcher bounds each call's bytes (reportbatch.MaxCallBytes).
const carryLimit = 64 << 10

// reporter sends an attempt's reports in order from its own goroutine, so
// that a slow or absent coordinator never holds up staging or running.
type reporter struct {
	client     Client
	log        hclog.Logger
	timeout    time.Duration
	bmin, bmax time.Duration
	staging    time.Duration // Config.StagingDelay
	queue      chan *cloudmlv1.ReportTaskRequest
	done       chan struct{} // closed when the goroutine exits
	rejected   chan struct{} // closed on FAILED_PRECONDITION
	err        error         // why it stopped; read after done
}

func newReporter(ctx context.Context, cfg *Config, log hclog.Logger) *reporter {
	r := &reporter{
		client: cfg.Client, log: log, timeout: cfg.CallTimeout,
		bmin: cfg.BackoffMin, bmax: cfg.BackoffMax, staging: cfg.StagingDelay,
		queue:    make(chan *cloudmlv1.ReportTaskRequest, 8),
		done:     make(chan struct{}),
		rejected: make(chan struct{}),
	}
	go r.run(ctx)
	return r
}

// send queues a progress report; it never blocks for long (the queue holds
// more reports than an attempt makes).
func (r *reporter) send(req *cloudmlv1.ReportTaskRequest) {
	req.Time = timestamppb.Now()
	select {
	case r.queue <- req:
	case <-r.done:
	}
}

// finish queues the final report and waits until every report is
// acknowledged. It returns ErrRejected or ctx's error if that never happens.
func (r *reporter) finish(ctx context.Context, req *cloudmlv1.ReportTaskRequest) error {
	if req != nil {
		r.send(req)
	}
	close(r.queue)
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *reporter) run(ctx context.Context) {
	defer close(r.done)
	bo := backoff.New(r.bmin, r.bmax)
	for req := range r.queue {
		if req.GetState() == cloudmlv1.TaskState_TASK_STATE_STAGING {
			req = r.supersede(ctx, req)
		}
		for {
			callCtx, cancel := context.WithTimeout(ctx, r.timeout)
			_, err := r.client.ReportTask(callCtx, req)
			cancel()
			if err == nil {
				bo.Reset()
				break
			}
			if status.Code(err) == codes.FailedPrecondition {
				r.log.Info("coordinator no longer wants the attempt", "state", req.GetState(), "error", err)
				r.err = ErrRejected
				close(r.rejected)
				return
			}
			r.log.Warn("report failed; will retry", "state", req.GetState(), "error", err)
			if werr := bo.Wait(ctx); werr != nil {
				r.err = werr
				return
			}
		}
	}
}

// supersede returns the report that follows STAGING within the staging
// delay, if one does (RUNNING, or the end of a staging that failed):
// STAGING then says nothing the coordinator will not learn from it, so it
// is not sent. Otherwise it returns staging, to send now.
func (r *reporter) supersede(ctx context.Context, staging *cloudmlv1.ReportTaskRequest) *cloudmlv1.ReportTaskRequest {
	if r.staging <= 0 {
		return staging
	}
	timer := time.NewTimer(r.staging)
	defer timer.Stop()
	select {
	case next, ok := <-r.queue:
		if ok {
			return next
		}
	case <-timer.C:
	case <-ctx.Done():
	}
	return staging
}
