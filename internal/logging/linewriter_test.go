package logging

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLineWriterLogsWholeLines(t *testing.T) {
	var out bytes.Buffer
	w := NewLineWriter(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info}), "stderr")
	w.Write([]byte("first\nsec"))
	w.Write([]byte("ond\r\nthird"))
	if got := strings.Count(out.String(), "stream=stderr"); got != 2 {
		t.Fatalf("%d lines logged before the flush, want 2:\n%s", got, out.String())
	}
	w.Flush()
	for _, want := range []string{"first: stream=stderr", "second: stream=stderr", "third: stream=stderr"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out.String())
		}
	}
}
