package logging

import (
	"bytes"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// maxLine bounds a buffered partial line before it is logged as it is.
const maxLine = 64 * 1024

// LineWriter passes on what a child process writes a whole line at a
// time (a line longer than 64 KiB in pieces). Call Flush after the child
// exits.
type LineWriter struct {
	emit func(line string) // called with w.mu held, one line at a time
	mu   sync.Mutex        // protects buf
	buf  []byte
}

// NewLineWriter returns a writer that logs each line to log at info level,
// tagged with its stream.
func NewLineWriter(log hclog.Logger, stream string) *LineWriter {
	return NewLineFunc(func(line string) { log.Info(line, "stream", stream) })
}

// NewLineFunc returns a writer that calls emit with each line, without
// its "\n" or a trailing "\r"; calls never overlap.
func NewLineFunc(emit func(line string)) *LineWriter {
	return &LineWriter{emit: emit}
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
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.line(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

// Flush logs a final partial line.
func (w *LineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = nil
	}
}

func (w *LineWriter) line(b []byte) {
	w.emit(string(bytes.TrimRight(b, "\r")))
}
