package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
)

// bench is a coordinator started from bin/ with its provider's nodes.
type bench struct {
	dir, addr string
	env       []string // added to the clients' environment
	config    string   // CLOUDML_CONFIG=<the admin credential>
	cmd       *exec.Cmd
	log       *logSink
	exited    chan struct{} // closed when the coordinator exited
	trace     *tracer       // -do-trace: client commands are marked in it
}

// newBench starts a coordinator with local agents.
func newBench(nodes, slots int) (*bench, error) {
	dir, err := os.MkdirTemp("", "cloudml-bench-")
	if err != nil {
		return nil, err
	}
	b, err := startCoordinator(dir, nil, "--provider", "local",
		"--nodes", fmt.Sprint(nodes), "--slots", fmt.Sprint(slots), "--state", filepath.Join(dir, "state"),
		"--bucket", "file://"+filepath.Join(dir, "bucket"), "--log-level", "warn")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := b.client("-o", "json", "cluster", "nodes").Output()
		if strings.Count(string(out), "NODE_STATE_READY") >= nodes {
			return b, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.close(10 * time.Second)
	return nil, fmt.Errorf("agents not ready in 30s:\n%s", b.logTail())
}

// coordinatorBin is the coordinator binary the benchmarks start
// (-coordinator-bin), to compare a build against bin/'s.
var coordinatorBin = "bin/coordinator"

// startCoordinator runs `bin/coordinator serve --listen ADDR args...` with
// env added to this process's environment; its output goes to b.log.
func startCoordinator(dir string, env []string, args ...string) (*bench, error) {
	addr, err := freeAddr("127.0.0.1")
	if err != nil {
		return nil, err
	}
	return startCoordinatorOn(dir, addr, env, args...)
}

// startCoordinatorOn is startCoordinator listening on addr.
func startCoordinatorOn(dir, addr string, env []string, args ...string) (*bench, error) {
	b := &bench{dir: dir, addr: addr, log: &logSink{}, exited: make(chan struct{})}
	// The coordinator writes its admin credential there; the clients read it.
	b.config = pki.ConfigEnv + "=" + filepath.Join(dir, "admin.config")
	b.cmd = exec.Command(coordinatorBin, append([]string{"serve", "--listen", addr}, args...)...)
	b.cmd.Env = append(append(os.Environ(), env...), b.config)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start coordinator (run make build first): %w", err)
	}
	go func() {
		b.cmd.Wait()
		close(b.exited)
	}()
	return b, nil
}

// freeAddr returns host:port with a port that was free a moment ago.
func freeAddr(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (b *bench) client(args ...string) *exec.Cmd {
	cmd := exec.Command("bin/cloudml-client", append([]string{"--coordinator", b.addr}, args...)...)
	cmd.Env = append(append(os.Environ(), b.env...), b.config)
	return cmd
}

// output runs a client command and returns its stdout, or an error with
// its stderr.
func (b *bench) output(args ...string) ([]byte, error) {
	if b.trace != nil {
		b.trace.line(time.Now(), "bench ", "client "+strings.Join(args, " ")+" starts")
		defer func() { b.trace.line(time.Now(), "bench ", "client "+strings.Join(args, " ")+" returned") }()
	}
	cmd := b.client(args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("cloudml-client %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out, nil
}

// timing is what one followed job took.
type timing struct {
	job       string
	start     time.Time     // submit began
	total     time.Duration // submit to the end of the log stream (the job ended)
	streaming time.Duration // first byte of output to the last byte
	toLast    time.Duration // submit to the last byte of output
}

// run submits a job and follows it to the end with `logs -f`; it returns
// the timings and the stream's stdout.
func (b *bench) run(args ...string) (timing, []byte, error) {
	start := time.Now()
	out, err := b.output(append([]string{"submit"}, args...)...)
	if err != nil {
		return timing{}, nil, err
	}
	job := strings.TrimSpace(string(out))
	cmd := b.client("logs", "-f", "--task", "0", job)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return timing{}, nil, err
	}
	if err := cmd.Start(); err != nil {
		return timing{}, nil, err
	}
	var logs bytes.Buffer
	var first, last time.Time
	buf := make([]byte, 1<<20)
	for {
		n, rerr := pipe.Read(buf)
		if n > 0 {
			last = time.Now()
			if first.IsZero() {
				first = last
			}
		}
		logs.Write(buf[:n])
		if rerr != nil {
			break
		}
	}
	end := time.Now()
	if err := cmd.Wait(); err != nil {
		return timing{}, nil, fmt.Errorf("logs -f %s: %w: %s", job, err, strings.TrimSpace(errb.String()))
	}
	t := timing{job: job, start: start, total: end.Sub(start)}
	if !first.IsZero() {
		t.streaming, t.toLast = last.Sub(first), last.Sub(start)
	}
	return t, logs.Bytes(), nil
}

func (b *bench) logTail() string {
	s := b.log.String()
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}

// close stops the coordinator (SIGTERM, SIGKILL after wait) and removes
// its directory.
func (b *bench) close(wait time.Duration) error {
	defer os.RemoveAll(b.dir)
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		return nil
	case <-time.After(wait):
		b.cmd.Process.Kill()
		<-b.exited
		return errors.New("the coordinator did not stop within " + wait.String() + " of SIGTERM")
	}
}

// logSink keeps the coordinator's output and tells watchers about each
// line as it arrives, with its arrival time.
type logSink struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	partial  []byte
	watchers []func(at time.Time, line string)
}

func (s *logSink) Write(p []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	if s.buf.Len() > 8<<20 { // keep the tail only
		tail := append([]byte(nil), s.buf.Bytes()[s.buf.Len()-4<<20:]...)
		s.buf.Reset()
		s.buf.Write(tail)
	}
	if len(s.watchers) == 0 {
		return len(p), nil
	}
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		for _, w := range s.watchers {
			w(now, line)
		}
	}
	return len(p), nil
}

// watch calls fn with every later line (under the sink's lock: fn must
// not block).
func (s *logSink) watch(fn func(at time.Time, line string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchers = append(s.watchers, fn)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

var _ io.Writer = (*logSink)(nil)
