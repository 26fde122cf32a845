package cli

import (
	"io"

	"golang.org/x/term"
)

// fdWriter is a writer with a file descriptor, such as *os.File.
type fdWriter interface {
	io.Writer
	Fd() uintptr
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(fdWriter)
	return ok && term.IsTerminal(int(f.Fd()))
}

// termSize is w's size in columns and rows, or 80x24 when not known.
func termSize(w io.Writer) (cols, rows int) {
	if f, ok := w.(fdWriter); ok {
		if c, r, err := term.GetSize(int(f.Fd())); err == nil && c > 0 && r > 0 {
			return c, r
		}
	}
	return 80, 24
}
