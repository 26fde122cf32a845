package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cloudml/cloudml/internal/logging"
)

// doTrace is -do-trace: a file where the DigitalOcean row (d) writes a
// timeline of its runs: the coordinator's and the agents' logs at debug
// level, the droplets' consoles and the client's commands, each line
// prefixed with the time it arrived (the logs' own times are the
// writers'; the arrival times share one clock).
var doTrace string

// tracer writes timestamped lines to a file.
type tracer struct {
	mu sync.Mutex // protects w
	f  *os.File
	w  *bufio.Writer
}

func newTracer(path string) (*tracer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	return &tracer{f: f, w: bufio.NewWriter(f)}, nil
}

// line writes one line with its arrival time and source prefix.
func (t *tracer) line(at time.Time, prefix, line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%s %s%s\n", at.UTC().Format("15:04:05.000000"), prefix, line)
}

// writer is an io.Writer whose lines go to the trace with prefix.
func (t *tracer) writer(prefix string) io.Writer {
	return logging.NewLineFunc(func(line string) { t.line(time.Now(), prefix, line) })
}

func (t *tracer) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.w.Flush(); err != nil {
		t.f.Close()
		return err
	}
	return t.f.Close()
}
