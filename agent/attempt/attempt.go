package attempt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/agent/runtime"
	"github.com/cloudml/cloudml/agent/stage"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Config is what every attempt of a node shares.
type Config struct {
	// Client reports and publishes logs.
	Client Client
	// Cache stages code and data.
	Cache *stage.Cache
	// Runtime starts the command.
	Runtime runtime.Runtime
	// OpenBucket opens the output bucket; nil means bucket.Open.
	OpenBucket bucket.OpenFunc
	// NodeID is recorded in the manifest.
	NodeID string
	// Dir is the root of the attempt directories (WorkDir/attempts).
	Dir string
	// HostEnv is the agent's own environment: a task inherits only the
	// variables runtime.HostEnv lets through, never the rest (tokens,
	// credentials).
	HostEnv []string
	// BaseEnv are variables the agent sets for every task (the Octave
	// startup file, USER and LOGNAME); they replace HostEnv's.
	BaseEnv []string
	// KillGrace is how long a stopped task gets between SIGTERM and
	// SIGKILL; default 5s.
	KillGrace time.Duration
	// CallTimeout bounds each unary call; default 10s.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound retry delays; defaults 200ms, 10s.
	BackoffMin, BackoffMax time.Duration
	// LogBatchBytes and LogFlushInterval tune log batching (logship
	// defaults when zero).
	LogBatchBytes    int
	LogFlushInterval time.Duration
	// StagingDelay is how long the STAGING report waits for a later one
	// that makes it moot (the task started or ended): then only that is
	// sent. Zero or negative sends STAGING at once.
	StagingDelay time.Duration
	// Logger is the agent's logger.
	Logger hclog.Logger
}

func (c *Config) setDefaults() {
	if c.KillGrace <= 0 {
		c.KillGrace = 5 * time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = 200 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// stopKind says why a running attempt is being stopped.
type stopKind int

const (
	stopNone     stopKind = iota
	stopCancel            // the coordinator sent Cancel
	stopReject            // the coordinator answered FAILED_PRECONDITION
	stopTimeout           // the assignment's timeout passed
	stopShutdown          // the agent is shutting down
	stopLost              // the runtime went away; not reported
)

// Attempt is one assignment being carried out.
type Attempt struct {
	cfg Config
	asg *cloudmlv1.Assignment
	log hclog.Logger

	stopCh   chan struct{} // closed by the first stop request
	stopOnce sync.Once
	mu       sync.Mutex // protects stop, reason and abort
	stop     stopKind
	reason   string
	abort    context.CancelFunc // ends Run's ctx when the attempt is dropped
	done     chan struct{}
	att      *Attached // set for a task started outside the agent
}

// New prepares an attempt of asg; Run carries it out.
func New(cfg Config, asg *cloudmlv1.Assignment) *Attempt {
	cfg.setDefaults()
	ref := asg.GetRef()
	return &Attempt{
		cfg: cfg, asg: asg,
		log:    cfg.Logger.With("job_id", ref.GetJobId(), "task_index", ref.GetTaskIndex(), "attempt", ref.GetAttempt()),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
}

// Ref names the attempt.
func (a *Attempt) Ref() *cloudmlv1.TaskRef { return a.asg.GetRef() }

// Done is closed when Run has returned.
func (a *Attempt) Done() <-chan struct{} { return a.done }

// Cancel stops the attempt (SIGTERM, then SIGKILL after the grace period);
// it ends as TASK_STATE_CANCELLED.
func (a *Attempt) Cancel(reason string) { a.requestStop(stopCancel, reason) }

func (a *Attempt) requestStop(kind stopKind, reason string) {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.stop, a.reason = kind, reason
		abort := a.abort
		a.mu.Unlock()
		close(a.stopCh)
		if kind == stopReject && abort != nil {
			abort() // dropped: stop staging, shipping and uploading at once
		}
	})
}

func (a *Attempt) stopped() (stopKind, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stop, a.reason
}

// dir returns the attempt's directory, refusing ids that are not a single
// path element.
func (a *Attempt) dir() (string, error) {
	ref := a.asg.GetRef()
	job := ref.GetJobId()
	if job == "" || !filepath.IsLocal(job) || filepath.Base(job) != job {
		return "", fmt.Errorf("invalid job id %q", job)
	}
	return filepath.Join(a.cfg.Dir, job, strconv.Itoa(int(ref.GetTaskIndex())), strconv.Itoa(int(ref.GetAttempt()))), nil
}

// Run carries out the attempt and reports its end. It returns when the end
// is acknowledged, when the coordinator rejects the attempt, or when ctx
// ends (the agent shuts down: the task is stopped and not reported, so the
// coordinator counts it as lost rather than failed).
func (a *Attempt) Run(ctx context.Context) {
	defer close(a.done)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.abort = cancel
	a.mu.Unlock()
	go func() {
		select {
		case <-parent.Done():
			a.requestStop(stopShutdown, "agent shutting down")
		case <-a.done:
		}
	}()
	rep := newReporter(ctx, &a.cfg, a.log)
	go func() {
		select {
		case <-rep.rejected:
			a.requestStop(stopReject, "rejected by the coordinator")
		case <-rep.done:
		}
	}()
	a.log.Info("attempt started")
	res := a.execute(ctx, rep)
	kind, _ := a.stopped()
	switch kind {
	case stopShutdown:
		a.log.Info("attempt stopped by agent shutdown", "exit_code", res.exitCode)
		rep.finish(ctx, nil)
		return
	case stopLost:
		a.log.Warn("attempt abandoned: the runtime is gone", "exit_code", res.exitCode)
		rep.finish(ctx, nil)
		return
	case stopReject:
		a.log.Info("attempt dropped", "exit_code", res.exitCode)
		rep.finish(ctx, nil)
		return
	}
	a.removeDir(res)
	var logs []*cloudmlv1.LogBatch
	if res.carry != nil {
		// An error here (ctx ended, logs rejected) is the end report's to
		// meet: the coordinator refuses or waits for what it lacks.
		logs, _ = res.carry(ctx, a.carryBytes() > 0)
	}
	err := rep.finish(ctx, &cloudmlv1.ReportTaskRequest{
		Ref: a.Ref(), State: res.state, ExitCode: int32(res.exitCode), Message: res.message(),
		Metrics: res.metrics, ResultsUrl: res.resultsURL, LastLogSeq: res.lastLogSeq, LogBatches: logs,
	})
	switch {
	case errors.Is(err, ErrRejected):
		a.log.Info("final report rejected; attempt dropped")
	case err != nil:
		a.log.Warn("final report not acknowledged", "error", err)
	default:
		a.log.Info("attempt ended", "state", res.state, "exit_code", res.exitCode, "message", res.message())
	}
}

// removeDir deletes the attempt's local directory (its outputs, log copies
// and run dir) once every result is in the bucket, before the final
// report: nothing is lost, and a node's disk does not fill up with every
// task it ever ran. A failed upload keeps the directory, so the outputs can
// still be recovered from the node.
func (a *Attempt) removeDir(res *result) {
	if !res.uploaded {
		return
	}
	root, err := a.dir()
	if err == nil {
		err = os.RemoveAll(root)
	}
	if err != nil {
		a.log.Warn("cannot remove the attempt's local directory", "error", err)
	}
}
