package pulse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long the process may take to say where it
// listens.
const startTimeout = 30 * time.Second

// Process is a pulse process the coordinator started.
type Process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
	done  chan struct{} // closed when the process ended
	err   error         // why, once done is closed
}

// Start runs argv (a command that runs Main, e.g. the coordinator binary
// with "pulse") with cfg's flags, waits for it to say where it listens,
// and then calls beat with each heartbeat it answers, from one goroutine,
// until it ends. Its standard error is the coordinator's.
func Start(argv []string, cfg Config, stderr io.Writer, beat func(Beat)) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("pulse: no command to start the pulse process with")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	level := "info"
	if cfg.Logger != nil {
		level = cfg.Logger.GetLevel().String()
	}
	args := append(append([]string(nil), argv[1:]...),
		"--listen", cfg.Listen, "--pki", cfg.PKIDir, "--heartbeat", cfg.Period.String(), "--log-level", level)
	cmd := exec.Command(argv[0], args...)
	said := &lastLine{}
	cmd.Stderr = io.MultiWriter(stderr, said)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pulse: start %s: %w", argv[0], err)
	}
	p := &Process{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	r := bufio.NewReader(stdout)
	hello := make(chan error, 1)
	go func() {
		line, err := r.ReadBytes('\n')
		var h Hello
		if err == nil {
			err = json.Unmarshal(line, &h)
		}
		if err == nil && h.Addr == "" {
			err = errors.New("it named no address")
		}
		p.addr = h.Addr
		hello <- err
	}()
	select {
	case err = <-hello:
	case <-time.After(startTimeout):
		err = fmt.Errorf("it did not say where it listens within %s", startTimeout)
	}
	if err != nil {
		stdin.Close()
		cmd.Process.Kill()
		werr := cmd.Wait()
		if last := said.String(); last != "" {
			return nil, fmt.Errorf("the pulse process failed to start: %s (%v)", last, werr)
		}
		return nil, fmt.Errorf("the pulse process failed to start: %w (%v)", err, werr)
	}
	go p.read(r, beat)
	return p, nil
}

// read passes each beat line to beat until the output ends, then waits
// for the process.
func (p *Process) read(r *bufio.Reader, beat func(Beat)) {
	dec := json.NewDecoder(r)
	var err error
	for {
		var b Beat
		if err = dec.Decode(&b); err != nil {
			break
		}
		beat(b)
	}
	werr := p.cmd.Wait()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	p.err = errors.Join(werr, err)
	if p.err == nil {
		p.err = errors.New("the pulse process ended")
	}
	close(p.done)
}

// Addr is where the process listens.
func (p *Process) Addr() string { return p.addr }

// Port is the port the process listens on.
func (p *Process) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process ended; Err then says why.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is why the process ended, once Done is closed.
func (p *Process) Err() error { return p.err }

// Stop ends the process (its input closes, then SIGTERM, then SIGKILL
// after 5 s) and waits for it.
func (p *Process) Stop() {
	p.stdin.Close()
	select {
	case <-p.done:
		return
	case <-time.After(time.Second):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// lastLine keeps the last line written to it (at most 1 KiB): what the
// process said before it failed.
type lastLine struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lastLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if t := bytes.TrimRight(l.buf, "\n"); bytes.LastIndexByte(t, '\n') >= 0 {
		l.buf = l.buf[bytes.LastIndexByte(t, '\n')+1:]
	}
	if len(l.buf) > 1024 {
		l.buf = l.buf[len(l.buf)-1024:]
	}
	return len(p), nil
}

// String is the last line, trimmed.
func (l *lastLine) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(bytes.TrimSpace(l.buf))
}
