package logging

import (
	"bytes"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxLine bounds a buffered partial line before it is logged as it is.
const maxLine = 64 * 1024

// LineWriter logs what a child process writes, one log line per output
// line, tagged with its stream. Call Flush after the child exits.
type LineWriter struct {
	log    hclog.Logger
	stream string
	mu     sync.Mutex // protects buf
	buf    []byte
}

// NewLineWriter returns a writer that logs each line to log at info level.
func NewLineWriter(log hclog.Logger, stream string) *LineWriter {
	return &LineWriter{log: log, stream: stream}
}

// Write implements io.Writer.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

// Flush logs a final partial line.
func (w *LineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *LineWriter) emit(line []byte) {
	w.log.Info(string(bytes.TrimRight(line, "\r")), "stream", w.stream)
}
