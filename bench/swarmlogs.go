package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/cloudml/cloudml/internal/netns"
)

// swarmLogRows measures (b) on the swarm: one task printing n numbered
// lines read with `logs -f`, against `docker service logs -f --raw` of the
// same command run as a plain service.
func (s *swarmBench) swarmLogRows(ctx context.Context, runs, n int) ([]row, error) {
	code, err := os.MkdirTemp(s.dir, "code-")
	if err != nil {
		return nil, err
	}
	var cmRates, dkRates []float64
	var cmLost, cmDup, dkLost, dkDup int
	for r := 0; r < runs; r++ {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		d, out, err := s.run("--name", "seq", "--image", netns.BusyboxImage, "--code", code, "--", "seq", strconv.Itoa(n))
		if err != nil {
			return nil, err
		}
		lost, dup := checkSeq(out, n)
		cmLost, cmDup = cmLost+lost, cmDup+dup
		cmRates = append(cmRates, float64(n-lost)/d.streaming.Seconds())
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		rate, lost, dup, err := s.serviceLogs(ctx, r, n)
		if err != nil {
			return nil, err
		}
		dkLost, dkDup = dkLost+lost, dkDup+dup
		dkRates = append(dkRates, rate)
	}
	cm, dk := medianF(cmRates), medianF(dkRates)
	rate := func(v float64) string { return fmt.Sprintf("%.3fM lines/s", v/1e6) }
	return []row{{
		name:     fmt.Sprintf("b) swarm: seq %d, first to last line", n),
		cloudml:  rate(cm),
		baseline: rate(dk) + " svc logs",
		ratio:    fmt.Sprintf("%.2f", cm/dk),
		goal:     ">= 1.5",
	}, {
		name:     "b) swarm: lines lost / duplicated (all runs)",
		cloudml:  fmt.Sprintf("%d / %d", cmLost, cmDup),
		baseline: fmt.Sprintf("%d / %d", dkLost, dkDup),
		goal:     "0 / 0 (cloudml)",
	}}, nil
}

// serviceLogs runs `seq n` as a service and reads it with `docker service
// logs -f --raw` against the manager's daemon, which does not end by
// itself: it is stopped once the task completed and no line arrived for 3s.
// It returns the rate of distinct lines between the first and the last
// one received, and the lines lost and duplicated.
func (s *swarmBench) serviceLogs(ctx context.Context, run, n int) (rate float64, lost, dup int, err error) {
	ids := map[string]bool{}
	defer s.removeServices(ctx, ids)
	name := fmt.Sprintf("bench-seq-%d", run)
	resp, err := s.mgr().ServiceCreate(ctx, serviceSpec(name, name, "seq", strconv.Itoa(n)), swarm.ServiceCreateOptions{})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("create service: %w", err)
	}
	ids[resp.ID] = true
	cmd := exec.Command("docker", "-H", netns.DockerHost(swarmName, s.manager), "service", "logs", "-f", "--raw", resp.ID)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, fmt.Errorf("docker service logs: %w", err)
	}
	rd := &lineCounter{seen: make([]bool, n+1)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rd.read(pipe)
	}()
	stopLogs := func() {
		cmd.Process.Kill()
		cmd.Wait()
		<-done
	}
	if _, _, err := s.waitTasks(ctx, ids, 10*time.Minute); err != nil {
		stopLogs()
		return 0, 0, 0, err
	}
wait:
	for {
		first, last, _ := rd.times()
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
	first, last, distinct := rd.times()
	if first.IsZero() || distinct == 0 {
		return 0, 0, 0, fmt.Errorf("docker service logs printed no line: %s", strings.TrimSpace(errb.String()))
	}
	return float64(distinct) / last.Sub(first).Seconds(), n - distinct, rd.dup, nil
}

// lineCounter reads numbered lines, noting the first and last arrival.
type lineCounter struct {
	mu          sync.Mutex
	first, last time.Time
	seen        []bool
	distinct    int
	dup         int
}

func (c *lineCounter) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	c.mu.Lock()
	c.last = time.Now() // for the "nothing arrived" timeout
	c.mu.Unlock()
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			now := time.Now()
			v, perr := strconv.Atoi(strings.TrimSpace(string(line)))
			c.mu.Lock()
			if c.first.IsZero() {
				c.first = now
			}
			c.last = now
			switch {
			case perr != nil || v < 1 || v >= len(c.seen) || c.seen[v]:
				c.dup++
			default:
				c.seen[v] = true
				c.distinct++
			}
			c.mu.Unlock()
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

func (c *lineCounter) times() (first, last time.Time, distinct int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first, c.last, c.distinct
}
