package attempt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloudml/cloudml/agent/runtime"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// ErrRuntimeLost is wrapped by an attached process's Wait error when the
// node lost its runtime (the Docker daemon) mid-attempt: the attempt then
// ends without a final report, and the coordinator, told by the node's
// heartbeat, reschedules it.
var ErrRuntimeLost = errors.New("lost the task runtime")

// Attached is a task started outside the agent (a swarm container that
// landed on this node). Its attempt skips staging and starting: it reports
// RUNNING at once (which claims a swarm attempt), then supervises Process
// and uploads OutputDir like any other attempt.
type Attached struct {
	// Process is the running (or already ended) task.
	Process runtime.Process
	// OutputDir is the task's output directory as seen on the node.
	OutputDir string
	// ExitMessage, if set, describes a non-zero exit code; it is called
	// after Process.Wait.
	ExitMessage func(code int) string
}

// NewAttached prepares an attempt of asg for a task that already runs.
func NewAttached(cfg Config, asg *cloudmlv1.Assignment, att Attached) *Attempt {
	a := New(cfg, asg)
	a.att = &att
	return a
}

// executeAttached supervises an attached task; see execute.
func (a *Attempt) executeAttached(ctx context.Context, rep *reporter, res *result) *result {
	rep.send(&cloudmlv1.ReportTaskRequest{Ref: a.Ref(), State: cloudmlv1.TaskState_TASK_STATE_RUNNING, ExitCode: -1})
	root, err := a.dir()
	if err != nil {
		res.msg = err.Error()
		return res
	}
	l := &layout{root: root, run: a.att.OutputDir, output: a.att.OutputDir, logs: filepath.Join(root, "logs")}
	l.stdout, l.stderr = filepath.Join(l.logs, "stdout.log"), filepath.Join(l.logs, "stderr.log")
	if err := os.RemoveAll(root); err != nil {
		return a.attachFailed(ctx, res, l, fmt.Errorf("clear attempt dir: %w", err))
	}
	if err := os.MkdirAll(l.logs, 0o755); err != nil {
		return a.attachFailed(ctx, res, l, fmt.Errorf("create attempt dir: %w", err))
	}
	return a.supervised(ctx, res, a.att.Process, l, time.Now())
}

// attachFailed still supervises the task (its logs are shipped and it is
// stopped on cancel) but keeps no local log copies.
func (a *Attempt) attachFailed(ctx context.Context, res *result, l *layout, err error) *result {
	res.warnings = append(res.warnings, err.Error())
	l.stdout, l.stderr = os.DevNull, os.DevNull
	return a.supervised(ctx, res, a.att.Process, l, time.Now())
}
