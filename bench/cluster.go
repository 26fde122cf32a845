package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// bench is a coordinator with local agents started from bin/.
type bench struct {
	dir, addr string
	cmd       *exec.Cmd
	log       bytes.Buffer
}

func newBench(nodes, slots int) (*bench, error) {
	dir, err := os.MkdirTemp("", "cloudml-bench-")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	b := &bench{dir: dir, addr: addr}
	b.cmd = exec.Command("bin/coordinator", "serve", "--listen", addr, "--provider", "local",
		"--nodes", fmt.Sprint(nodes), "--slots", fmt.Sprint(slots), "--state", filepath.Join(dir, "state"),
		"--bucket", "file://"+filepath.Join(dir, "bucket"), "--log-level", "warn")
	b.cmd.Stdout, b.cmd.Stderr = &b.log, &b.log
	if err := b.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start coordinator (run make build first): %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := b.client("-o", "json", "cluster", "nodes").Output()
		if strings.Count(string(out), "NODE_STATE_READY") >= nodes {
			return b, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.close()
	return nil, fmt.Errorf("agents not ready in 30s:\n%s", b.log.String())
}

func (b *bench) client(args ...string) *exec.Cmd {
	return exec.Command("bin/cloudml-client", append([]string{"--coordinator", b.addr}, args...)...)
}

// timing is what one followed job took.
type timing struct {
	total     time.Duration // submit to the end of the log stream (the job ended)
	streaming time.Duration // first byte of output to the last byte
	toLast    time.Duration // submit to the last byte of output
}

// run submits a job and follows it to the end with `logs -f`; it returns
// the timings and the stream's stdout.
func (b *bench) run(args ...string) (timing, []byte, error) {
	start := time.Now()
	out, err := b.client(append([]string{"submit"}, args...)...).Output()
	if err != nil {
		return timing{}, nil, fmt.Errorf("submit %v: %w", args, err)
	}
	job := strings.TrimSpace(string(out))
	cmd := b.client("logs", "-f", "--task", "0", job)
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
		return timing{}, nil, fmt.Errorf("logs -f %s: %w", job, err)
	}
	t := timing{total: end.Sub(start)}
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

func (b *bench) close() {
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.cmd.Wait()
	os.RemoveAll(b.dir)
}
