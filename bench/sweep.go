package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// sweepRows measures (a): a sweep of sleeps and of a trivial command through
// CloudML against xargs -P with the same parallelism.
func (b *bench) sweepRows(runs, tasks, par int) ([]row, error) {
	code, err := os.MkdirTemp(b.dir, "code-")
	if err != nil {
		return nil, err
	}
	vals := make([]string, tasks)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	param := "i=" + strings.Join(vals, ",")
	measure := func(cmd ...string) (cm, xa time.Duration, err error) {
		var cms, xas []time.Duration
		for r := 0; r < runs; r++ {
			d, _, err := b.run(append([]string{"--name", "bench", "--code", code, "--param", param, "--"}, cmd...)...)
			if err != nil {
				return 0, 0, err
			}
			cms = append(cms, d.total)
			x, err := xargs(tasks, par, cmd)
			if err != nil {
				return 0, 0, err
			}
			xas = append(xas, x)
		}
		return median(cms), median(xas), nil
	}
	sleepCM, sleepXA, err := measure("sleep", "0.1")
	if err != nil {
		return nil, err
	}
	trueCM, trueXA, err := measure("true")
	if err != nil {
		return nil, err
	}
	overhead := float64(trueCM-trueXA) / float64(time.Millisecond) * float64(par) / float64(tasks)
	return []row{
		{
			name:     fmt.Sprintf("a) %d x sleep 0.1, parallelism %d: wall time", tasks, par),
			cloudml:  sleepCM.Round(time.Millisecond).String(),
			baseline: sleepXA.Round(time.Millisecond).String() + " xargs",
			ratio:    fmt.Sprintf("%.2f", sleepCM.Seconds()/sleepXA.Seconds()),
			goal:     "<= 1.20",
		},
		{
			name:     fmt.Sprintf("a) %d x true: wall time", tasks),
			cloudml:  trueCM.Round(time.Millisecond).String(),
			baseline: trueXA.Round(time.Millisecond).String() + " xargs",
			ratio:    fmt.Sprintf("%.2f", trueCM.Seconds()/trueXA.Seconds()),
			goal:     "",
		},
		{
			name:     "a) per-task overhead of a trivial command",
			cloudml:  fmt.Sprintf("%.1f ms", overhead),
			baseline: "",
			ratio:    "",
			goal:     "(wall difference x parallelism / tasks)",
		},
	}, nil
}

// xargs runs the same command tasks times with xargs -P par.
func xargs(tasks, par int, cmd []string) (time.Duration, error) {
	var in strings.Builder
	for i := 0; i < tasks; i++ {
		fmt.Fprintln(&in, i)
	}
	// The index becomes sh's $0, which the command ignores, as a task would.
	c := exec.Command("xargs", "-P", fmt.Sprint(par), "-n", "1", "sh", "-c", strings.Join(cmd, " "))
	c.Stdin = strings.NewReader(in.String())
	start := time.Now()
	if out, err := c.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("xargs: %w: %s", err, out)
	}
	return time.Since(start), nil
}
