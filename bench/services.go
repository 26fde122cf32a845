package main

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/cloudml/cloudml/internal/netns"
)

// serviceSpec is a service with the layout CloudML gives a task
// (agent/container.ServiceSpec): replicated with one replica, restart
// condition none, one CPU reserved and as limit, no published ports.
func serviceSpec(name, label string, cmd ...string) swarm.ServiceSpec {
	one := uint64(1)
	labels := map[string]string{"cloudml.bench": label}
	res := &swarm.Resources{NanoCPUs: 1e9}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: netns.BusyboxImage, Labels: labels, Command: cmd},
			Resources:     &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: res.NanoCPUs}, Reservations: res},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP},
	}
}

// taskCount is how the tasks of a set of services ended.
type taskCount struct {
	services int // services with at least one task
	complete int // services whose only task completed
	extra    int // tasks beyond one per service
	failed   int // tasks that ended in another terminal state
}

// countTasks counts the tasks of the services in ids on the manager.
func (s *swarmBench) countTasks(ctx context.Context, ids map[string]bool) (taskCount, error) {
	tasks, err := s.mgr().TaskList(ctx, swarm.TaskListOptions{})
	if err != nil {
		return taskCount{}, err
	}
	per := map[string][]swarm.Task{}
	for _, t := range tasks {
		if ids[t.ServiceID] {
			per[t.ServiceID] = append(per[t.ServiceID], t)
		}
	}
	var c taskCount
	for _, ts := range per {
		c.services++
		c.extra += len(ts) - 1
		for _, t := range ts {
			switch t.Status.State {
			case swarm.TaskStateComplete:
				if len(ts) == 1 {
					c.complete++
				}
			case swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
				c.failed++
			}
		}
	}
	return c, nil
}

// waitTasks polls until every service in ids has a finished task; it
// returns when the last one was seen finished.
func (s *swarmBench) waitTasks(ctx context.Context, ids map[string]bool, limit time.Duration) (taskCount, time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		c, err := s.countTasks(ctx, ids)
		if err != nil {
			return c, time.Time{}, err
		}
		if c.complete+c.failed >= len(ids) {
			return c, time.Now(), nil
		}
		if time.Now().After(deadline) {
			return c, time.Time{}, fmt.Errorf("services not done within %s: %+v", limit, c)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeServices removes the services in ids and waits for the swarm to
// settle.
func (s *swarmBench) removeServices(ctx context.Context, ids map[string]bool) error {
	for id := range ids {
		if err := s.mgr().ServiceRemove(ctx, id); err != nil {
			return fmt.Errorf("remove service %s: %w", id, err)
		}
	}
	return s.settle(ctx)
}
