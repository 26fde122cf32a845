package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestProgressReportsLargeTransfers(t *testing.T) {
	var w bytes.Buffer
	p := newProgress(bytes.NewReader(make([]byte, progressMin)), progressMin, "uploading code", &w)
	if n, err := io.Copy(io.Discard, p); err != nil || n != progressMin {
		t.Fatalf("copy: %d, %v", n, err)
	}
	p.done()
	if out := w.String(); !strings.Contains(out, "uploading code: 8.0 / 8.0 MiB (100%)") {
		t.Errorf("progress output %q lacks the final 100%% line", out)
	}

	w.Reset()
	small := newProgress(strings.NewReader("tiny"), 4, "uploading code", &w)
	io.Copy(io.Discard, small)
	small.done()
	if w.Len() != 0 {
		t.Errorf("small transfer printed progress: %q", w.String())
	}
}
