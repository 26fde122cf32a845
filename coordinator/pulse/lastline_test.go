package pulse

import (
	"strings"
	"testing"
)

// TestLastLineKeepsTheLastLine: what a failed process said last, across
// writes that split lines, at most 1 KiB of it.
func TestLastLineKeepsTheLastLine(t *testing.T) {
	var l lastLine
	l.Write([]byte("starting\nlisten on :1: addr"))
	l.Write([]byte("ess in use\n"))
	if got := l.String(); got != "listen on :1: address in use" {
		t.Errorf("last line %q", got)
	}
	l.Write([]byte(strings.Repeat("x", 3000)))
	if got := l.String(); got != strings.Repeat("x", 1024) {
		t.Errorf("a 3000-byte line kept as %d bytes, want its last 1024", len(got))
	}
}
