package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/cloudml/cloudml/internal/netns"
)

// swarmSweepRows measures (a) on the swarm: a sweep of `true` through
// CloudML against the same tasks created directly through the Engine API as
// services with CloudML's layout, and checks that every index ran once.
func (s *swarmBench) swarmSweepRows(ctx context.Context, runs, tasks int) ([]row, error) {
	code, err := os.MkdirTemp(s.dir, "code-")
	if err != nil {
		return nil, err
	}
	vals := make([]string, tasks)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	param := "i=" + strings.Join(vals, ",")
	var cms, directs []time.Duration
	cmOnce, directOnce := tasks, tasks // the worst run's count
	for r := 0; r < runs; r++ {
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		d, _, err := s.run("--name", "sweep", "--image", netns.BusyboxImage, "--code", code, "--param", param, "--", "true")
		if err != nil {
			return nil, err
		}
		cms = append(cms, d.total)
		once, err := s.onceEach(d.job, tasks)
		if err != nil {
			return nil, err
		}
		cmOnce = min(cmOnce, once)
		if err := s.settle(ctx); err != nil {
			return nil, err
		}
		took, once, err := s.directSweep(ctx, r, tasks)
		if err != nil {
			return nil, err
		}
		directs = append(directs, took)
		directOnce = min(directOnce, once)
	}
	cm, direct := median(cms), median(directs)
	return []row{{
		name:     fmt.Sprintf("a) swarm: %d x true, makespan", tasks),
		cloudml:  cm.Round(time.Millisecond).String(),
		baseline: direct.Round(time.Millisecond).String() + " API",
		ratio:    fmt.Sprintf("%.2f", cm.Seconds()/direct.Seconds()),
		goal:     "<= 1.15",
	}, {
		name:     "a) swarm: indices run exactly once (worst run)",
		cloudml:  fmt.Sprintf("%d/%d", cmOnce, tasks),
		baseline: fmt.Sprintf("%d/%d", directOnce, tasks),
		goal:     fmt.Sprintf("%d/%d", tasks, tasks),
	}}, nil
}

// onceEach checks `results -o json`: one row per index, each succeeded
// with attempt 1, and every swept value once. It returns how many indices
// passed.
func (s *swarmBench) onceEach(job string, tasks int) (int, error) {
	out, err := s.output("-o", "json", "results", job)
	if err != nil {
		return 0, err
	}
	var res struct {
		Rows []struct {
			TaskIndex int               `json:"taskIndex"`
			Attempt   int               `json:"attempt"`
			State     string            `json:"state"`
			Params    map[string]string `json:"params"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, fmt.Errorf("results -o json %s: %w", job, err)
	}
	rows, vals := map[int]int{}, map[string]int{}
	for _, r := range res.Rows {
		rows[r.TaskIndex]++
		vals[r.Params["i"]]++
	}
	ok := 0
	for _, r := range res.Rows {
		if r.TaskIndex >= 0 && r.TaskIndex < tasks && rows[r.TaskIndex] == 1 && vals[r.Params["i"]] == 1 &&
			r.State == "TASK_STATE_SUCCEEDED" && r.Attempt == 1 {
			ok++
		}
	}
	return ok, nil
}

// directSweep creates tasks services running `true` on the manager and
// waits until each one's task completed. It returns the makespan and how
// many services ran exactly one task that completed.
func (s *swarmBench) directSweep(ctx context.Context, run, tasks int) (time.Duration, int, error) {
	label := fmt.Sprintf("sweep-%d", run)
	ids := map[string]bool{}
	defer s.removeServices(ctx, ids)
	start := time.Now()
	for i := 0; i < tasks; i++ {
		resp, err := s.mgr().ServiceCreate(ctx, serviceSpec(fmt.Sprintf("bench-%s-%d", label, i), label, "true"), swarm.ServiceCreateOptions{})
		if err != nil {
			return 0, 0, fmt.Errorf("create service %d: %w", i, err)
		}
		ids[resp.ID] = true
	}
	c, end, err := s.waitTasks(ctx, ids, 5*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	if err := s.removeServices(ctx, ids); err != nil {
		return 0, 0, err
	}
	clear(ids)
	return end.Sub(start), c.complete, nil
}
