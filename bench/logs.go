package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// logRows measures (b): one task printing n numbered lines received by
// `logs -f`, against the same writer redirected to a file.
func (b *bench) logRows(runs, n int) ([]row, error) {
	code, err := os.MkdirTemp(b.dir, "code-")
	if err != nil {
		return nil, err
	}
	var cms, streams, files []time.Duration
	lost, dup := 0, 0
	for r := 0; r < runs; r++ {
		d, out, err := b.run("--name", "seq", "--code", code, "--", "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		l, du := checkSeq(out, n)
		lost, dup = lost+l, dup+du
		cms, streams = append(cms, d.toLast), append(streams, d.streaming)
		f, err := seqToFile(b.dir, n)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	cm, stream, file := median(cms), median(streams), median(files)
	rate := func(d time.Duration) string { return fmt.Sprintf("%.2fM lines/s", float64(n)/d.Seconds()/1e6) }
	return []row{{
		name:     fmt.Sprintf("b) seq %d, logs -f first to last line", n),
		cloudml:  rate(stream),
		baseline: rate(file) + " file",
		ratio:    fmt.Sprintf("%.3f", file.Seconds()/stream.Seconds()),
		goal:     ">= 0.5",
	}, {
		name:     fmt.Sprintf("b) seq %d, submit to last line received", n),
		cloudml:  rate(cm) + fmt.Sprintf(" (%s)", cm.Round(time.Millisecond)),
		baseline: rate(file) + " file",
		ratio:    fmt.Sprintf("%.3f", file.Seconds()/cm.Seconds()),
		goal:     "",
	}, {
		name:     "b) lines lost / duplicated (all runs)",
		cloudml:  fmt.Sprintf("%d / %d", lost, dup),
		baseline: "",
		ratio:    "",
		goal:     "0 / 0",
	}}, nil
}

// checkSeq counts lines missing from, and extra in, the output of seq n.
func checkSeq(out []byte, n int) (lost, dup int) {
	seen := make([]bool, n+1)
	for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		v, err := strconv.Atoi(string(line))
		if err != nil || v < 1 || v > n {
			dup++
			continue
		}
		if seen[v] {
			dup++
		}
		seen[v] = true
	}
	for i := 1; i <= n; i++ {
		if !seen[i] {
			lost++
		}
	}
	return lost, dup
}

// seqToFile is the baseline: the same writer redirected to a file.
func seqToFile(dir string, n int) (time.Duration, error) {
	path := filepath.Join(dir, "seq.out")
	start := time.Now()
	if out, err := exec.Command("sh", "-c", "seq "+strconv.Itoa(n)+" > "+path).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("seq to file: %w: %s", err, out)
	}
	return time.Since(start), os.Remove(path)
}
