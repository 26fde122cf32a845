package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/cloudml/cloudml/internal/netns"
)

// swarmLogRows measures (b) on the swarm: one task printing n numbered
// lines, from submit to the last line received by `submit --follow`,
// against the same writer (busybox seq, as in the task's image) with its
// stdout on a file, timed the same way; and against `docker service logs
// -f --raw` of the same command run as a plain service: the first-to-last
// windows (the row kept from before, goal >= 1.5) and from submit or
// ServiceCreate to the last line. Both read the task's output through the
// Engine's logs API, which passes about 60k lines/s on the 2-core
// machine: n is 1M, not 20M (that took six minutes, and docker service
// logs over fifteen).
func (s *swarmBench) swarmLogRows(ctx context.Context, runs, n int) ([]row, error) {
	code, err := os.MkdirTemp(s.dir, "code-")
	if err != nil {
		return nil, err
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("the file baseline runs busybox seq: %w", err)
	}
	var waits, windows, files, dkWaits, dkWindows []float64
	var lost, dup, dkLost, dkDup int
	for r := 0; r < runs; r++ {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		f, err := s.follow(n, "--name", "seq", "--image", netns.BusyboxImage, "--code", code, "--", "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		lost, dup = lost+f.lost, dup+f.dup
		waits, windows = append(waits, f.rate(f.toLast)), append(windows, f.rate(f.window))
		t, err := writeToFile(s.dir, busybox, "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		files = append(files, float64(n)/t.Seconds())
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		d, err := s.serviceLogs(ctx, r, n)
		if err != nil {
			return nil, err
		}
		dkLost, dkDup = dkLost+d.lost, dkDup+d.dup
		dkWaits, dkWindows = append(dkWaits, d.rate(d.toLast)), append(dkWindows, d.rate(d.window))
	}
	wait, window, file, dkWait, dkWindow := medianF(waits), medianF(windows), medianF(files), medianF(dkWaits), medianF(dkWindows)
	return []row{{
		name:     fmt.Sprintf("b) swarm: seq %d, submit to last line", n),
		cloudml:  rateIn(wait, n),
		baseline: rateIn(file, n) + " file",
		ratio:    fmt.Sprintf("%.3f", wait/file),
		goal:     ">= 0.5",
	}, {
		name:     "b) swarm: the same, first to last (extra)",
		cloudml:  rateIn(window, n),
		baseline: rateIn(file, n) + " file",
		ratio:    fmt.Sprintf("%.3f", window/file),
	}, {
		name:     "b) swarm: first to last, against svc logs",
		cloudml:  rateIn(window, n),
		baseline: rateIn(dkWindow, n) + " svc logs",
		ratio:    fmt.Sprintf("%.2f", window/dkWindow),
		goal:     ">= 1.5",
	}, {
		name:     "b) swarm: submit or create to last, svc logs",
		cloudml:  rateIn(wait, n),
		baseline: rateIn(dkWait, n) + " svc logs",
		ratio:    fmt.Sprintf("%.2f", wait/dkWait),
	}, {
		name:     "b) swarm: lines lost / duplicated (all runs)",
		cloudml:  fmt.Sprintf("%d / %d", lost, dup),
		baseline: fmt.Sprintf("%d / %d", dkLost, dkDup),
		goal:     "0 / 0 (cloudml)",
	}}, nil
}

// serviceLogs runs `seq n` as a service and reads it with `docker service
// logs -f --raw` against the manager's daemon, which does not end by
// itself: it is stopped once the task completed and no line arrived for 3s.
// toLast is from the ServiceCreate call to the last line received.
func (s *swarmBench) serviceLogs(ctx context.Context, run, n int) (followed, error) {
	ids := map[string]bool{}
	defer s.removeServices(ctx, ids)
	name := fmt.Sprintf("bench-seq-%d", run)
	start := time.Now()
	resp, err := s.mgr().ServiceCreate(ctx, serviceSpec(name, name, "seq", strconv.Itoa(n)), swarm.ServiceCreateOptions{})
	if err != nil {
		return followed{}, fmt.Errorf("create service: %w", err)
	}
	ids[resp.ID] = true
	cmd := exec.Command("docker", "-H", netns.DockerHost(swarmName, s.manager), "service", "logs", "-f", "--raw", resp.ID)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return followed{}, err
	}
	if err := cmd.Start(); err != nil {
		return followed{}, fmt.Errorf("docker service logs: %w", err)
	}
	c := newLineCounter(n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.read(pipe)
	}()
	stopLogs := func() {
		cmd.Process.Kill()
		cmd.Wait()
		<-done
	}
	if _, _, err := s.waitTasks(ctx, ids, 10*time.Minute); err != nil {
		stopLogs()
		return followed{}, err
	}
	quietSince := time.Now()
wait:
	for {
		first, last, _, _, _ := c.result()
		if last.Before(quietSince) {
			last = quietSince
		}
		if quiet := time.Since(last); (!first.IsZero() && quiet > 3*time.Second) || quiet > 30*time.Second {
			break
		}
		select {
		case <-done:
			break wait
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopLogs()
	first, last, distinct, lost, dup := c.result()
	if first.IsZero() || distinct == 0 {
		return followed{}, fmt.Errorf("docker service logs printed no line: %s", strings.TrimSpace(errb.String()))
	}
	return followed{toLast: last.Sub(start), window: last.Sub(first), distinct: distinct, lost: lost, dup: dup}, nil
}
