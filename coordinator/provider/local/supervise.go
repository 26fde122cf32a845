package local

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/logging"
)

// RestartPolicy is how long a supervised process that exited waits before
// it is started again: Min after its first exit, doubling up to Max while
// it keeps exiting, and back to Min once a run lasted StableAfter.
type RestartPolicy struct {
	// Min is the first delay, and the delay after a stable run.
	Min time.Duration
	// Max caps the doubling.
	Max time.Duration
	// StableAfter is how long a run lasts to count as stable.
	StableAfter time.Duration
}

// DefaultRestartPolicy returns 1 s doubling up to 30 s, reset after a
// stable minute.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{Min: time.Second, Max: 30 * time.Second, StableAfter: time.Minute}
}

// Validate checks the policy and fills the zero durations from
// DefaultRestartPolicy.
func (p *RestartPolicy) Validate() error {
	def := DefaultRestartPolicy()
	if p.Min < 0 || p.Max < 0 || p.StableAfter < 0 {
		return fmt.Errorf("restart delays must not be negative, got min %v, max %v, stable after %v", p.Min, p.Max, p.StableAfter)
	}
	if p.Min == 0 {
		p.Min = def.Min
	}
	if p.Max == 0 {
		p.Max = max(def.Max, p.Min)
	}
	if p.StableAfter == 0 {
		p.StableAfter = def.StableAfter
	}
	if p.Max < p.Min {
		return fmt.Errorf("restart max %v is below restart min %v", p.Max, p.Min)
	}
	return nil
}

// Next returns the delay before the next start of a process whose run
// lasted ran and whose previous restart waited prev (0: none yet).
func (p RestartPolicy) Next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= p.StableAfter {
		return p.Min
	}
	return min(2*prev, p.Max)
}

// Supervised keeps one agent process running until its context ends, as
// systemd's Restart=always does for the agent on a droplet: an agent that
// crashes, is killed or exits comes back with the same command (and so the
// same node identity and work directory). Its output goes to its logger;
// it runs in its own process group.
type Supervised struct {
	log    hclog.Logger
	policy RestartPolicy
	newCmd func() (*exec.Cmd, error)
	done   chan struct{} // closed once supervision ended and the process exited
	clock  clock

	mu  sync.Mutex // protects pid
	pid int        // of the running process; 0 between runs
}

// clock is the supervisor's time: the real one, or a test's.
type clock struct {
	now func() time.Time
	// wait returns after d, or false once ctx ended first.
	wait func(ctx context.Context, d time.Duration) bool
}

var realClock = clock{now: time.Now, wait: func(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}}

// run is one started process.
type run struct {
	cmd    *exec.Cmd
	start  time.Time
	exited chan struct{} // closed once Wait returned
}

// Supervise starts the process newCmd makes (a fresh one for every start;
// Supervise sets its output, process group and parent-death signal) and
// keeps it running, restarted after the delays of policy (validated by
// the caller), until ctx ends; then it stops it: SIGTERM, SIGKILL after
// StopTimeout. An error starting the first process is returned (a bad
// binary is a configuration error); later start errors are retried with
// the restart delays.
func Supervise(ctx context.Context, log hclog.Logger, policy RestartPolicy, newCmd func() (*exec.Cmd, error)) (*Supervised, error) {
	return supervise(ctx, log, policy, newCmd, realClock)
}

func supervise(ctx context.Context, log hclog.Logger, policy RestartPolicy, newCmd func() (*exec.Cmd, error), c clock) (*Supervised, error) {
	s := &Supervised{log: log, policy: policy, newCmd: newCmd, done: make(chan struct{}), clock: c}
	r, err := s.start()
	if err != nil {
		return nil, err
	}
	go s.loop(ctx, r)
	return s, nil
}

// Wait returns once supervision ended and the last process exited.
func (s *Supervised) Wait() { <-s.done }

// PID returns the running process's id, or 0 while none runs (between a
// crash and its restart, and after supervision ended).
func (s *Supervised) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

func (s *Supervised) loop(ctx context.Context, r *run) {
	defer close(s.done)
	var delay time.Duration
	for {
		select {
		case <-ctx.Done():
			s.stop(r)
			return
		case <-r.exited:
		}
		if ctx.Err() != nil {
			return
		}
		delay = s.policy.Next(delay, s.clock.now().Sub(r.start))
		s.log.Warn("agent exited; restarting it", "in", delay)
		if !s.clock.wait(ctx, delay) {
			return
		}
		next, err := s.start()
		if err != nil {
			s.log.Error("restart agent failed", "error", err)
			next = &run{start: s.clock.now(), exited: make(chan struct{})}
			close(next.exited)
		}
		r = next
	}
}

func (s *Supervised) start() (*run, error) {
	cmd, err := s.newCmd()
	if err != nil {
		return nil, err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Its own process group: a Ctrl-C in the coordinator's terminal
	// reaches the coordinator only, which then stops the agent in order
	// instead of seeing it die and restarting it.
	cmd.SysProcAttr.Setpgid = true
	stdout := logging.NewLineWriter(s.log, "stdout")
	stderr := logging.NewLineWriter(s.log, "stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A task that inherited the agent's output must not hold up Wait.
	cmd.WaitDelay = 2 * time.Second
	begin := s.clock.now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent (%s): %w", cmd.Path, err)
	}
	s.log.Info("agent started", "pid", cmd.Process.Pid)
	s.setPID(cmd.Process.Pid)
	r := &run{cmd: cmd, start: begin, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		s.setPID(0)
		stdout.Flush()
		stderr.Flush()
		s.log.Info("agent exited", "pid", cmd.Process.Pid, "status", exitStatus(err))
		close(r.exited)
	}()
	return r, nil
}

func (s *Supervised) setPID(pid int) {
	s.mu.Lock()
	s.pid = pid
	s.mu.Unlock()
}

// stop ends r: SIGTERM, then SIGKILL after StopTimeout.
func (s *Supervised) stop(r *run) {
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-r.exited:
	case <-timer.C:
		s.log.Warn("agent did not stop after SIGTERM; killing it", "pid", r.cmd.Process.Pid)
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
