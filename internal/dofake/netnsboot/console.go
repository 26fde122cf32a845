package netnsboot

import (
	"io"
	"sync"

	"github.com/cloudml/cloudml/internal/logging"
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
	*logging.LineWriter
	mu   sync.Mutex // protects tail
	tail []string
}

func newLineWriter(c *console, prefix string) *lineWriter {
	w := &lineWriter{}
	w.LineWriter = logging.NewLineFunc(func(line string) {
		c.writeLine([]byte(prefix + line + "\n"))
		w.mu.Lock()
		defer w.mu.Unlock()
		w.tail = append(w.tail, line)
		if len(w.tail) > tailLines {
			w.tail = w.tail[len(w.tail)-tailLines:]
		}
	})
	return w
}

// Tail returns the last lines written.
func (w *lineWriter) Tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.tail...)
}
