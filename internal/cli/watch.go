package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// --watch. On a terminal the output is redrawn in place each interval, as
// watch(1) and docker stats do. Elsewhere (a pipe, a file) a snapshot is
// printed each time what it shows changed, separated by a blank line, so a
// log of the changes builds up as kubectl get --watch does.

// snapshot is one rendering of a watched command.
type snapshot struct {
	// text is what to show.
	text []byte
	// key changes only when the data changed (not with ages and times):
	// off a terminal, a snapshot with the key of the last is not printed.
	key []byte
	// done ends the watch after this snapshot is shown.
	done bool
}

// watch shows what read returns every interval until it is done or ctx
// ends (an interrupt: not an error).
func (a *App) watch(ctx context.Context, read func(ctx context.Context) (snapshot, error)) error {
	tty := isTerminal(a.Stdout)
	var lastKey []byte
	lines := 0 // terminal rows the last snapshot took
	tick := time.NewTicker(a.watchInterval())
	defer tick.Stop()
	for first := true; ; first = false {
		s, err := read(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case tty:
			lines = redraw(a.Stdout, s.text, lines)
		case first || !bytes.Equal(s.key, lastKey):
			if !first {
				fmt.Fprintln(a.Stdout)
			}
			if _, err := a.Stdout.Write(s.text); err != nil {
				return err
			}
		}
		lastKey = s.key
		if s.done {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// redraw replaces the last `lines` rows of the terminal w with text, cut
// to the terminal's height, and returns how many rows it took.
func redraw(w io.Writer, text []byte, lines int) int {
	cols, rows := termSize(w)
	var buf bytes.Buffer
	if lines > 0 {
		fmt.Fprintf(&buf, "\x1b[%dA", lines) // up to where the last snapshot began
	}
	buf.WriteString("\r\x1b[J") // clear from there down
	used := 0
	all := strings.SplitAfter(string(text), "\n")
	if all[len(all)-1] == "" {
		all = all[:len(all)-1]
	}
	for i, line := range all {
		h := rowsOf(strings.TrimSuffix(line, "\n"), cols)
		if used+h > rows-1 {
			more := fmt.Sprintf("... %d more lines (make the terminal taller, or use -o json)\n", len(all)-i)
			if used+1 <= rows-1 {
				buf.WriteString(more)
				used++
			}
			break
		}
		buf.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			buf.WriteByte('\n')
		}
		used += h
	}
	w.Write(buf.Bytes())
	return used
}

// rowsOf is how many terminal rows a line takes on cols columns.
func rowsOf(line string, cols int) int {
	n := utf8.RuneCountInString(line)
	if n == 0 {
		return 1
	}
	return (n + cols - 1) / cols
}
