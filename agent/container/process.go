package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloudml/cloudml/agent/attempt"
)

// process is a task container seen through runtime.Process: its log
// stream, demultiplexed into stdout and stderr, and its exit.
type process struct {
	ctx      context.Context // the agent's; when it ends the agent detaches
	docker   Docker
	id       string
	stdout   *io.PipeReader
	stderr   *io.PipeReader
	logsDone chan struct{}

	// stopped is drainTail's answer from ContainerWait, nil if it did not
	// get one; written before logsDone closes, read after.
	stopped *container.WaitResponse

	mu       sync.Mutex // protects the fields below
	logErr   error
	oom      bool
	memLimit int64
}

// follow starts reading the container's logs from its start, following
// them until it stops. ctx bounds everything the process does.
//
// Engine 20.10's follow can end as the container exits before it has sent
// the last of the log (seen here: a task's last ~1.2 KB of 3.9 KB missing),
// so once it ends, the whole log is read again without follow and what the
// follow did not deliver, counted per stream, is appended.
func follow(ctx context.Context, d Docker, id string) *process {
	outR, outW := io.Pipe()
	errR, errW := io.Pipe()
	p := &process{ctx: ctx, docker: d, id: id, stdout: outR, stderr: errR, logsDone: make(chan struct{})}
	go func() {
		defer close(p.logsDone)
		out, errs := &countWriter{w: outW}, &countWriter{w: errW}
		err := copyLogs(ctx, d, id, true, out, errs)
		if err == nil {
			err = p.drainTail(ctx, out, errs)
		}
		if err != nil {
			p.mu.Lock()
			p.logErr = err
			p.mu.Unlock()
		}
		outW.Close()
		errW.Close()
	}()
	return p
}

// copyLogs demultiplexes the container's log stream into out and errs.
func copyLogs(ctx context.Context, d Docker, id string, followLogs bool, out, errs io.Writer) error {
	rc, err := d.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: followLogs})
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = stdcopy.StdCopy(out, errs, rc)
	return err
}

// drainTail waits for the container to stop, reads its whole log once more
// and writes what the follow missed.
func (p *process) drainTail(ctx context.Context, out, errs *countWriter) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	respC, errC := p.docker.ContainerWait(wctx, p.id, container.WaitConditionNotRunning)
	select {
	case resp := <-respC:
		p.stopped = &resp
	case <-errC:
		return nil // the daemon is gone or the wait timed out: Wait reports it
	}
	return copyLogs(ctx, p.docker, p.id, false, &skipWriter{w: out, skip: out.n}, &skipWriter{w: errs, skip: errs.n})
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// skipWriter drops the first skip bytes and writes the rest.
type skipWriter struct {
	w    io.Writer
	skip int64
}

func (s *skipWriter) Write(b []byte) (int, error) {
	n := len(b)
	if s.skip >= int64(n) {
		s.skip -= int64(n)
		return n, nil
	}
	_, err := s.w.Write(b[s.skip:])
	s.skip = 0
	return n, err
}

func (p *process) Stdout() io.Reader { return p.stdout }
func (p *process) Stderr() io.Reader { return p.stderr }

// Wait returns the container's exit code. When the daemon cannot say, the
// error wraps attempt.ErrRuntimeLost (or is ctx's when the agent stops).
func (p *process) Wait() (int, error) {
	<-p.logsDone
	p.stdout.Close()
	p.stderr.Close()
	code, err := p.wait()
	if err != nil {
		if p.ctx.Err() != nil {
			return -1, fmt.Errorf("agent stopping: %w", p.ctx.Err())
		}
		return -1, fmt.Errorf("%w: container %.12s: %v", attempt.ErrRuntimeLost, p.id, err)
	}
	return code, nil
}

func (p *process) wait() (int, error) {
	// Bounded: the log stream ended, so the container has stopped or the
	// daemon is gone.
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	var werr error
	resp := p.stopped // drainTail waited already, unless the log stream broke
	if resp == nil {
		respC, errC := p.docker.ContainerWait(ctx, p.id, container.WaitConditionNotRunning)
		select {
		case r := <-respC:
			resp = &r
		case werr = <-errC:
		}
	}
	if resp != nil && resp.Error != nil && resp.Error.Message != "" {
		werr = errors.New(resp.Error.Message)
	}
	info, err := p.docker.ContainerInspect(ctx, p.id)
	if err != nil {
		if werr != nil {
			return -1, werr
		}
		return -1, err
	}
	if info.State == nil || info.State.Running {
		return -1, errors.New("container still running after its log stream ended")
	}
	p.mu.Lock()
	p.oom = info.State.OOMKilled
	if info.HostConfig != nil {
		p.memLimit = info.HostConfig.Memory
	}
	p.mu.Unlock()
	return info.State.ExitCode, nil
}

// Signal sends sig to the container. Once the agent is stopping it does
// nothing: the container keeps running and the next agent attaches to it.
func (p *process) Signal(sig os.Signal) error {
	if p.ctx.Err() != nil {
		return nil
	}
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("unsupported signal %v", sig)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	name := map[syscall.Signal]string{syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL", syscall.SIGINT: "SIGINT"}[s]
	if name == "" {
		name = fmt.Sprint(int(s))
	}
	err := p.docker.ContainerKill(ctx, p.id, name)
	if err != nil && !isNotFound(err) && !isConflict(err) {
		return fmt.Errorf("signal container %.12s: %w", p.id, err)
	}
	return nil
}

// ExitMessage describes a non-zero exit code of a container.
func (p *process) ExitMessage(code int) string {
	p.mu.Lock()
	oom, limit := p.oom, p.memLimit
	p.mu.Unlock()
	return exitMessage(code, oom, limit)
}

func exitMessage(code int, oom bool, memLimit int64) string {
	switch {
	case oom && memLimit > 0:
		return fmt.Sprintf("killed: out of memory (exit code %d, limit %d bytes): ask for more memory", code, memLimit)
	case oom:
		return fmt.Sprintf("killed: out of memory (exit code %d)", code)
	case code == 128+int(syscall.SIGKILL):
		return "killed by SIGKILL (exit code 137): the container was killed (docker kill, a stop that timed out, or the kernel)"
	case code == 128+int(syscall.SIGTERM):
		return "terminated by SIGTERM (exit code 143)"
	case code < 0:
		return "the container's exit code is unknown"
	}
	return fmt.Sprintf("exited with code %d", code)
}
