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

// Restart delays: an agent that exits is started again after RestartMin,
// doubling up to RestartMax while it keeps exiting, and back to RestartMin
// once a run lasted StableAfter.
const (
	RestartMin  = time.Second
	RestartMax  = 30 * time.Second
	StableAfter = time.Minute
)

// Supervised keeps one agent process running until its context ends, as
// systemd's Restart=always does for the agent on a droplet: an agent that
// crashes, is killed or exits comes back with the same command (and so the
// same node identity and work directory). Its output goes to its logger;
// it runs in its own process group.
type Supervised struct {
	log    hclog.Logger
	newCmd func() (*exec.Cmd, error)
	done   chan struct{} // closed once supervision ended and the process exited

	mu  sync.Mutex // protects pid
	pid int        // of the running process; 0 between runs
}

// run is one started process.
type run struct {
	cmd    *exec.Cmd
	start  time.Time
	exited chan struct{} // closed once Wait returned
}

// Supervise starts the process newCmd makes (a fresh one for every start;
// Supervise sets its output, process group and parent-death signal) and
// keeps it running until ctx ends; then it stops it: SIGTERM, SIGKILL
// after StopTimeout. An error starting the first process is returned (a
// bad binary is a configuration error); later start errors are retried
// with the restart delays.
func Supervise(ctx context.Context, log hclog.Logger, newCmd func() (*exec.Cmd, error)) (*Supervised, error) {
	s := &Supervised{log: log, newCmd: newCmd, done: make(chan struct{})}
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
	delay := RestartMin
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
		if time.Since(r.start) >= StableAfter {
			delay = RestartMin
		}
		s.log.Warn("agent exited; restarting it", "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, RestartMax)
		next, err := s.start()
		if err != nil {
			s.log.Error("restart agent failed", "error", err)
			next = &run{start: time.Now(), exited: make(chan struct{})}
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
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent (%s): %w", cmd.Path, err)
	}
	s.log.Info("agent started", "pid", cmd.Process.Pid)
	s.setPID(cmd.Process.Pid)
	r := &run{cmd: cmd, start: time.Now(), exited: make(chan struct{})}
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
