package attempt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudml/cloudml/agent/logship"
	"github.com/cloudml/cloudml/agent/runtime"
	"github.com/cloudml/cloudml/internal/metricjson"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// result is what the final report and the manifest say.
type result struct {
	state      cloudmlv1.TaskState
	exitCode   int
	msg        string
	warnings   []string
	metrics    metricjson.Map
	resultsURL string
	lastLogSeq uint64
	// carry returns the log batches the end report carries (logship's
	// Carry; take says whether the coordinator still takes them); nil
	// before the task ran.
	carry    func(ctx context.Context, take bool) ([]*cloudmlv1.LogBatch, error)
	timings  timings
	uploaded bool // every result is in the bucket
}

type timings struct {
	started, ended       time.Time
	staging, run, upload time.Duration
}

// message is the report's message: the reason, then one line per warning.
func (r *result) message() string {
	lines := []string{}
	if r.msg != "" {
		lines = append(lines, r.msg)
	}
	for _, w := range r.warnings {
		lines = append(lines, "warning: "+w)
	}
	return strings.Join(lines, "\n")
}

// execute stages, runs and uploads; it returns what to report. When the
// attempt was dropped or the agent shuts down the result is not reported.
func (a *Attempt) execute(ctx context.Context, rep *reporter) *result {
	res := &result{state: cloudmlv1.TaskState_TASK_STATE_FAILED, exitCode: -1}
	res.timings.started = time.Now()
	defer func() { res.timings.ended = time.Now() }()
	if a.att != nil {
		return a.executeAttached(ctx, rep, res)
	}
	rep.send(&cloudmlv1.ReportTaskRequest{Ref: a.Ref(), State: cloudmlv1.TaskState_TASK_STATE_STAGING, ExitCode: -1})

	root, err := a.dir()
	if err != nil {
		res.msg = err.Error()
		return res
	}
	stageCtx, cancelStage := context.WithCancel(ctx)
	go func() {
		select {
		case <-a.stopCh:
			cancelStage()
		case <-stageCtx.Done():
		}
	}()
	in, err := a.cfg.Cache.StageInputs(stageCtx, a.asg.GetCode(), a.asg.GetData())
	cancelStage()
	res.timings.staging = time.Since(res.timings.started)
	if kind, reason := a.stopped(); kind != stopNone {
		a.stoppedResult(res, kind, reason)
		return res
	}
	if err != nil {
		res.msg = err.Error()
		a.upload(ctx, res, nil)
		return res
	}
	l, err := prepare(root, in.Code, in.Data)
	if err != nil {
		res.msg = err.Error()
		return res
	}
	if l.warning != "" {
		res.warnings = append(res.warnings, l.warning)
	}
	proc, err := a.cfg.Runtime.Start(ctx, runtime.Spec{
		Ref: a.Ref(), Command: a.asg.GetCommand(), Env: a.environ(l), Dir: l.run, Writable: l.writable(),
		Image: a.asg.GetImage(), Resources: a.asg.GetResources(),
	})
	if err != nil {
		res.msg = err.Error()
		a.upload(ctx, res, l)
		return res
	}
	rep.send(&cloudmlv1.ReportTaskRequest{Ref: a.Ref(), State: cloudmlv1.TaskState_TASK_STATE_RUNNING, ExitCode: -1})
	return a.supervised(ctx, res, proc, l, time.Now())
}

// supervised ships the running task's logs, waits for it, then collects
// its metrics and uploads its results.
func (a *Attempt) supervised(ctx context.Context, res *result, proc runtime.Process, l *layout, runStart time.Time) *result {
	ship := logship.New(ctx, logship.Config{
		Ref: a.Ref(), Client: a.cfg.Client, BatchBytes: a.cfg.LogBatchBytes,
		FlushInterval: a.cfg.LogFlushInterval, CallTimeout: a.cfg.CallTimeout,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax, Logger: a.log.Named("logs"),
		// An attached container's output is read from its start by every
		// agent that attaches to it, also after a restart.
		Resume: a.att != nil,
		// A short attempt's output rides its end report when the
		// coordinator takes it there.
		CarryBytes: a.carryBytes(),
	})
	res.carry = ship.Carry
	code2, warn, waitErr := a.supervise(proc, ship, l)
	res.timings.run = time.Since(runStart)
	res.exitCode = code2
	if warn != "" {
		res.warnings = append(res.warnings, warn)
	}
	if errors.Is(waitErr, ErrRuntimeLost) {
		a.requestStop(stopLost, waitErr.Error())
	}
	lastSeq, err := ship.Close(ctx)
	res.lastLogSeq = lastSeq
	if errors.Is(err, logship.ErrRejected) {
		a.requestStop(stopReject, "logs rejected by the coordinator")
	}
	if kind, reason := a.stopped(); kind != stopNone {
		a.stoppedResult(res, kind, reason)
		if kind == stopShutdown || kind == stopReject || kind == stopLost {
			return res
		}
	} else if res.exitCode == 0 {
		res.state = cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
	} else {
		res.msg = exitMessage(res.exitCode, ship.Tail(cloudmlv1.LogStream_LOG_STREAM_STDERR))
		if a.att != nil && a.att.ExitMessage != nil {
			res.msg = attachedExitMessage(a.att.ExitMessage(res.exitCode), ship.Tail(cloudmlv1.LogStream_LOG_STREAM_STDERR))
		}
	}
	if err != nil {
		return res // ctx ended: nothing more can be sent
	}
	res.metrics, warn = readMetrics(l.output)
	if warn != "" {
		res.warnings = append(res.warnings, warn)
	}
	a.upload(ctx, res, l)
	return res
}

// stoppedResult fills in the state and message of a stopped attempt.
func (a *Attempt) stoppedResult(res *result, kind stopKind, reason string) {
	switch kind {
	case stopCancel:
		res.state = cloudmlv1.TaskState_TASK_STATE_CANCELLED
		res.msg = "cancelled"
		if reason != "" {
			res.msg += ": " + reason
		}
	default:
		res.state = cloudmlv1.TaskState_TASK_STATE_FAILED
		res.msg = reason
	}
}

func exitMessage(code int, stderrTail string) string {
	msg := fmt.Sprintf("exited with code %d", code)
	if code < 0 {
		msg = "killed by a signal (out of memory?)"
	}
	if stderrTail != "" {
		msg += fmt.Sprintf("; last stderr line: %q", stderrTail)
	}
	return msg
}

func attachedExitMessage(msg, stderrTail string) string {
	if stderrTail != "" {
		msg += fmt.Sprintf("; last stderr line: %q", stderrTail)
	}
	return msg
}

// supervise ships the process's output, enforces the timeout and stop
// requests (SIGTERM to the group, SIGKILL after KillGrace), and returns the
// exit code, a warning if the local log copies could not be written, and
// the error of Wait.
func (a *Attempt) supervise(proc runtime.Process, ship *logship.Shipper, l *layout) (int, string, error) {
	var warnings []string
	var wmu sync.Mutex
	copyStream := func(stream cloudmlv1.LogStream, src interface{ Read([]byte) (int, error) }, path string) {
		f, err := os.Create(path)
		if err != nil {
			wmu.Lock()
			warnings = append(warnings, fmt.Sprintf("local log copy: %v", err))
			wmu.Unlock()
			ship.Copy(stream, src, nil)
			return
		}
		w := bufio.NewWriterSize(f, 64<<10)
		err = ship.Copy(stream, src, w)
		if ferr := w.Flush(); err == nil {
			err = ferr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			wmu.Lock()
			warnings = append(warnings, err.Error())
			wmu.Unlock()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { copyStream(cloudmlv1.LogStream_LOG_STREAM_STDOUT, proc.Stdout(), l.stdout) })
	wg.Go(func() { copyStream(cloudmlv1.LogStream_LOG_STREAM_STDERR, proc.Stderr(), l.stderr) })
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()

	var timeoutC, killC <-chan time.Time
	if d := a.asg.GetTimeout().AsDuration(); a.asg.GetTimeout() != nil && d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeoutC = t.C
	}
	stopC, shipDone := a.stopCh, ship.Done()
loop:
	for {
		select {
		case <-copied:
			break loop
		case <-shipDone:
			shipDone = nil
			if errors.Is(ship.Err(), logship.ErrRejected) {
				a.requestStop(stopReject, "logs rejected by the coordinator")
			}
		case <-timeoutC:
			timeoutC = nil
			a.requestStop(stopTimeout, fmt.Sprintf("timed out after %s", a.asg.GetTimeout().AsDuration()))
		case <-stopC:
			stopC = nil
			kind, _ := a.stopped()
			a.log.Info("stopping task", "why", kind.String())
			if err := proc.Signal(syscall.SIGTERM); err != nil {
				a.log.Warn("signal task", "error", err)
			}
			t := time.NewTimer(a.cfg.KillGrace)
			defer t.Stop()
			killC = t.C
		case <-killC:
			killC = nil
			a.log.Info("task ignored SIGTERM; killing it")
			if err := proc.Signal(syscall.SIGKILL); err != nil {
				a.log.Warn("signal task", "error", err)
			}
		}
	}
	code, err := proc.Wait()
	if err != nil {
		warnings = append(warnings, fmt.Sprintf("wait for task: %v", err))
	}
	return code, strings.Join(warnings, "; "), err
}

func (k stopKind) String() string {
	return [...]string{"none", "cancel", "rejected", "timeout", "shutdown", "lost"}[k]
}
