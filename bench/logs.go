package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// logRows measures (b): one task printing n numbered lines, from submit to
// the last line received by `submit --follow` (what a user waits for),
// against the same writer with its stdout on a file, timed the same way:
// from spawning it to the file complete. The rates count distinct lines
// received. The window from the first line received to the last is an
// extra row, from the same runs.
func (b *bench) logRows(runs, n int) ([]row, error) {
	code, err := os.MkdirTemp(b.dir, "code-")
	if err != nil {
		return nil, err
	}
	var waits, windows, files []float64
	lost, dup := 0, 0
	for r := 0; r < runs; r++ {
		f, err := b.follow(n, "--name", "seq", "--code", code, "--", "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		lost, dup = lost+f.lost, dup+f.dup
		waits = append(waits, f.rate(f.toLast))
		windows = append(windows, f.rate(f.window))
		d, err := writeToFile(b.dir, "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		files = append(files, float64(n)/d.Seconds())
	}
	wait, window, file := medianF(waits), medianF(windows), medianF(files)
	return []row{{
		name:     fmt.Sprintf("b) seq %d, submit to last line received", n),
		cloudml:  rateIn(wait, n),
		baseline: rateIn(file, n) + " file",
		ratio:    fmt.Sprintf("%.3f", wait/file),
		goal:     ">= 0.5",
	}, {
		name:     "b) the same, first to last line (extra)",
		cloudml:  rateIn(window, n),
		baseline: rateIn(file, n) + " file",
		ratio:    fmt.Sprintf("%.3f", window/file),
	}, {
		name:    "b) lines lost / duplicated (all runs)",
		cloudml: fmt.Sprintf("%d / %d", lost, dup),
		goal:    "0 / 0",
	}}, nil
}

// rateIn formats a rate of lines per second with the time n lines take.
func rateIn(rate float64, n int) string {
	return fmt.Sprintf("%.2fM/s (%.1fs)", rate/1e6, float64(n)/rate)
}

// followed is one job followed with `submit --follow` to its end.
type followed struct {
	toLast   time.Duration // submit began to the last line received
	window   time.Duration // first line received to the last
	distinct int           // distinct lines received
	lost     int           // lines never received
	dup      int           // lines received more than once, or not of seq n
}

// rate is distinct lines per second over d.
func (f followed) rate(d time.Duration) float64 { return float64(f.distinct) / d.Seconds() }

// follow runs `cloudml-client submit --follow args...`, a job whose one
// task prints `seq n`, and counts the lines it prints after the job id.
func (b *bench) follow(n int, args ...string) (followed, error) {
	cmd := b.client(append([]string{"submit", "--follow"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return followed{}, err
	}
	c := newLineCounter(n)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return followed{}, err
	}
	br := bufio.NewReaderSize(pipe, 1<<20)
	_, rerr := br.ReadString('\n') // the job id
	if rerr == nil {
		rerr = c.read(br)
	}
	if rerr != nil {
		io.Copy(io.Discard, pipe)
	}
	if err := cmd.Wait(); err != nil || rerr != nil {
		return followed{}, fmt.Errorf("submit --follow: %w (read: %v): %s", err, rerr, strings.TrimSpace(errb.String()))
	}
	first, last, distinct, lost, dup := c.result()
	if distinct == 0 {
		return followed{}, fmt.Errorf("submit --follow printed no line of seq %d: %s", n, strings.TrimSpace(errb.String()))
	}
	return followed{toLast: last.Sub(start), window: last.Sub(first), distinct: distinct, lost: lost, dup: dup}, nil
}

// writeToFile is the baseline: argv with its stdout on a file, timed from
// spawning it to its exit (the file complete in the page cache, as the
// logs CloudML stores are).
func writeToFile(dir string, argv ...string) (time.Duration, error) {
	path := filepath.Join(dir, "seq.out")
	defer os.Remove(path)
	start := time.Now()
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s to a file: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return time.Since(start), nil
}
