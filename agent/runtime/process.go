package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ProcessName is the name the process runtime reports.
const ProcessName = "process"

func (*processRuntime) Name() string { return ProcessName }

func (r *processRuntime) Start(ctx context.Context, spec Spec) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(spec.Command) == 0 {
		return nil, notFoundf("empty command")
	}
	path, err := resolve(spec.Command[0], spec.Dir, spec.Env)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        spec.Command,
		Env:         spec.Env,
		Dir:         spec.Dir,
		Stdout:      outW,
		Stderr:      errW,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	err = r.configure(cmd, spec)
	if err == nil {
		err = r.start(cmd, spec.Writable)
	}
	// The child holds its own copies of the write ends.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if errors.Is(err, ErrIsolation) {
			return nil, err
		}
		return nil, fmt.Errorf("start %q: %w", spec.Command[0], err)
	}
	p := &process{cmd: cmd, stdout: outR, stderr: errR, done: make(chan struct{})}
	go p.reap()
	return p, nil
}

// resolve finds the executable: a name with a slash is relative to dir,
// a bare name is looked up on the task's PATH.
func resolve(name, dir string, env []string) (string, error) {
	notFound := notFoundf("command %q not found (not on PATH and not in the code directory)", name)
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			return "", notFound
		}
		if st.Mode()&0o111 == 0 {
			return "", notFoundf("command %q is not executable (chmod +x it, or run it through its interpreter)", name)
		}
		return p, nil
	}
	if p, err := lookPath(name, envPath(env)); err == nil {
		return p, nil
	}
	if st, err := os.Stat(filepath.Join(dir, name)); err == nil && !st.IsDir() {
		return "", notFoundf("command %q is not on PATH but is in the code directory: use \"./%s\"", name, name)
	}
	return "", notFound
}

// notFoundError says why a command was not found in words a user can act
// on, and matches ErrCommandNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }
func (e *notFoundError) Unwrap() error { return ErrCommandNotFound }

func notFoundf(format string, args ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, args...)}
}

func envPath(env []string) string {
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v // the last one wins, as in exec
		}
	}
	return path
}

// lookPath is exec.LookPath against the task's PATH rather than the agent's.
func lookPath(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if d == "" || !filepath.IsAbs(d) {
			continue // never resolve against the agent's working directory
		}
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

type process struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
	done           chan struct{}

	mu       sync.Mutex // protects exited
	exited   bool
	exitCode int
	waitErr  error
}

// reap waits for the command, then kills whatever it left behind in its
// process group: a task ends when its command ends, and a stray child that
// holds stdout open must not keep the attempt alive.
func (p *process) reap() {
	pid := p.cmd.Process.Pid
	// Wait without reaping: while the leader is a zombie its pid, and so the
	// group id, cannot be reused, which makes the group kill below safe.
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	err := p.cmd.Wait()
	code := p.cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		err = nil // a non-zero exit is a result, not an error
	}
	p.mu.Lock()
	p.exited, p.exitCode, p.waitErr = true, code, err
	p.mu.Unlock()
	close(p.done)
}

func (p *process) Stdout() io.Reader { return p.stdout }
func (p *process) Stderr() io.Reader { return p.stderr }

func (p *process) Wait() (int, error) {
	<-p.done
	p.stdout.Close()
	p.stderr.Close()
	return p.exitCode, p.waitErr
}

func (p *process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("unsupported signal %v", sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return nil
	}
	// The group id is the leader's pid; signal the whole group.
	if err := syscall.Kill(-p.cmd.Process.Pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group: %w", err)
	}
	return nil
}
