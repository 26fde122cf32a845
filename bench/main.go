// Command bench measures CloudML side by side with what a user would
// otherwise run, in one run on this machine, and prints ratios:
//
//	a) a 200-task sweep of `sleep 0.1` through the process runtime against
//	   the same 200 commands under `xargs -P` with the same parallelism, and
//	   the per-task overhead of a trivial command;
//	b) one task printing 1,000,000 numbered lines received by `logs -f`
//	   against the same writer redirected to a file, checking that no line
//	   is lost or duplicated.
//
// It uses the binaries in bin/ (make build) and reports medians of -runs.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"time"
)

func main() {
	runs := flag.Int("runs", 3, "repetitions of each measurement (medians are reported)")
	tasks := flag.Int("tasks", 200, "tasks in the sweep benchmark")
	nodes := flag.Int("nodes", 2, "local agents")
	slots := flag.Int("slots", 4, "slots per agent (parallelism = nodes*slots)")
	lines := flag.Int("lines", 1000000, "lines in the log benchmark")
	flag.Parse()
	b, err := newBench(*nodes, *slots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer b.close()
	par := *nodes * *slots
	var rows []row
	sweep, err := b.sweepRows(*runs, *tasks, par)
	if err == nil {
		rows = append(rows, sweep...)
		var logRows []row
		logRows, err = b.logRows(*runs, *lines)
		rows = append(rows, logRows...)
	}
	printRows(rows, *runs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		fmt.Fprintln(os.Stderr, "coordinator log tail:\n"+b.logTail())
		os.Exit(1)
	}
}

// row is one line of the report.
type row struct {
	name, cloudml, baseline, ratio, goal string
}

func printRows(rows []row, runs int) {
	fmt.Printf("\nCloudML benchmarks (median of %d runs each, measured side by side)\n\n", runs)
	fmt.Printf("%-48s %14s %14s %10s  %s\n", "measurement", "cloudml", "baseline", "ratio", "goal")
	for _, r := range rows {
		fmt.Printf("%-48s %14s %14s %10s  %s\n", r.name, r.cloudml, r.baseline, r.ratio, r.goal)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
