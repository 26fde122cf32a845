package cli

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// progressMin is the size from which transfers report progress.
const progressMin = 8 << 20

// progress wraps a reader and reports how far a long transfer has got,
// at most twice a second, on w.
type progress struct {
	r     io.Reader
	total int64
	label string
	w     io.Writer
	start time.Time
	n     atomic.Int64
	last  time.Time
}

func newProgress(r io.Reader, total int64, label string, w io.Writer) *progress {
	return &progress{r: r, total: total, label: label, w: w, start: time.Now()}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	if p.total >= progressMin && time.Since(p.last) > 500*time.Millisecond {
		p.last = time.Now()
		p.print("\r")
	}
	return n, err
}

func (p *progress) print(end string) {
	n := p.n.Load()
	secs := time.Since(p.start).Seconds()
	rate := float64(n) / (1 << 20) / max(secs, 1e-3)
	pct := 100.0
	if p.total > 0 {
		pct = float64(n) * 100 / float64(p.total)
	}
	fmt.Fprintf(p.w, "%s%s: %.1f / %.1f MiB (%.0f%%) %.1f MiB/s", end, p.label,
		float64(n)/(1<<20), float64(p.total)/(1<<20), pct, rate)
}

// done prints the final line of a long transfer.
func (p *progress) done() {
	if p.total >= progressMin {
		p.print("\r")
		fmt.Fprintln(p.w)
	}
}
