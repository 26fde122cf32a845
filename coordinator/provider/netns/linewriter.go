package netns

import (
	"bytes"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// lineWriter logs what a child writes, one log line per output line.
type lineWriter struct {
	log    hclog.Logger
	stream string
	mu     sync.Mutex // protects buf
	buf    []byte
}

const maxLine = 64 * 1024

func (w *lineWriter) Write(p []byte) (int, error) {
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

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineWriter) emit(line []byte) {
	w.log.Info(string(bytes.TrimRight(line, "\r")), "stream", w.stream)
}
