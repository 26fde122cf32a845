package netnsboot

import (
	"bytes"
	"io"
	"sync"
)

// tailLines is how many of each source's last lines a machine keeps.
const tailLines = 30

// console is the pool's shared output (Config.Console).
type console struct {
	mu sync.Mutex // protects w
	w  io.Writer  // nil: discard
}

func (c *console) writeLine(line []byte) {
	if c.w == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.Write(line)
}

// lineWriter is one source of a droplet's console (cloud-init, a unit):
// it writes whole lines to the console with a prefix and keeps the last
// ones.
type lineWriter struct {
	c      *console
	prefix string

	mu   sync.Mutex // protects buf, tail
	buf  []byte
	tail []string
}

func newLineWriter(c *console, prefix string) *lineWriter {
	return &lineWriter{c: c, prefix: prefix}
}

// Write takes any chunk of output; lines are passed on when complete.
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
	if len(w.buf) > 64<<10 { // a line without end: pass it on in pieces
		w.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

// Flush passes on an unfinished last line.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

// emit sends one line; w.mu is held.
func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	w.c.writeLine([]byte(w.prefix + string(line) + "\n"))
	w.tail = append(w.tail, string(line))
	if len(w.tail) > tailLines {
		w.tail = w.tail[len(w.tail)-tailLines:]
	}
}

// Tail returns the last lines written.
func (w *lineWriter) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...)
}
