package container

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/agent/attempt"
	"github.com/cloudml/cloudml/agent/backoff"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Found is a task container that started on this node.
type Found struct {
	// Assignment is decoded from the container's labels.
	Assignment *cloudmlv1.Assignment
	// ContainerID is the container.
	ContainerID string
	// OutputDir is the output volume's mountpoint on the node.
	OutputDir string

	ctx    context.Context
	docker Docker
}

// Attach starts following the container's logs and exit; it returns what
// attempt.NewAttached needs. Call it once, and only for a Found you take.
func (f *Found) Attach() attempt.Attached {
	p := follow(f.ctx, f.docker, f.ContainerID)
	return attempt.Attached{Process: p, OutputDir: f.OutputDir, ExitMessage: p.ExitMessage}
}

// Remove deletes the container and its output volume once the attempt has
// been reported.
func (f *Found) Remove(ctx context.Context) error {
	err := f.docker.ContainerRemove(ctx, f.ContainerID, container.RemoveOptions{Force: true})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove container %.12s: %w", f.ContainerID, err)
	}
	err = f.docker.VolumeRemove(ctx, Name(f.Assignment.GetRef()), true)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", Name(f.Assignment.GetRef()), err)
	}
	return nil
}

// NodeConfig configures a Node.
type NodeConfig struct {
	// Docker is the node's daemon.
	Docker Docker
	// Handle is called once for every task container that started on this
	// node (found by its start event, or listed at start and after the
	// event stream broke). It must not block for long.
	Handle func(ctx context.Context, f *Found)
	// BackoffMin and BackoffMax bound the wait before reconnecting to the
	// daemon's event stream; defaults 200ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives node events; nil discards them.
	Logger hclog.Logger
}

// Node finds the task containers swarm starts on this node.
type Node struct {
	cfg NodeConfig
	log hclog.Logger

	mu   sync.Mutex // protects seen
	seen map[string]bool
}

// NewNode returns a Node; Run starts it.
func NewNode(cfg NodeConfig) *Node {
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(10*time.Second, cfg.BackoffMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Node{cfg: cfg, log: cfg.Logger, seen: map[string]bool{}}
}

// Run watches the daemon until ctx ends: it subscribes to container start
// events, lists the task containers that exist already (so attempts
// survive an agent restart), then hands each new one to Handle. When the
// event stream breaks it backs off and does both again.
func (n *Node) Run(ctx context.Context) {
	bo := backoff.New(n.cfg.BackoffMin, n.cfg.BackoffMax)
	for ctx.Err() == nil {
		begin := time.Now()
		err := n.watch(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("docker event stream ended; reconnecting", "error", err)
		if time.Since(begin) > time.Minute {
			bo.Reset()
		}
		if bo.Wait(ctx) != nil {
			return
		}
	}
}

func (n *Node) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, errs := n.cfg.Docker.Events(wctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", string(events.ActionStart)),
		filters.Arg("label", LabelAttempt),
	)})
	// Listed after subscribing, so a container that starts in between is
	// seen twice rather than never.
	list, err := n.cfg.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", LabelAttempt),
		filters.Arg("status", "running"),
		filters.Arg("status", "exited"),
	)})
	if err != nil {
		return fmt.Errorf("list task containers: %w", err)
	}
	for _, c := range list {
		n.found(ctx, c.ID, c.Labels)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-msgs:
			n.found(ctx, m.Actor.ID, m.Actor.Attributes)
		case err := <-errs:
			if err == nil {
				err = errors.New("event stream closed")
			}
			return err
		}
	}
}

// found hands a container to Handle the first time it is seen.
func (n *Node) found(ctx context.Context, id string, labels map[string]string) {
	n.mu.Lock()
	seen := n.seen[id]
	n.seen[id] = true
	n.mu.Unlock()
	if seen {
		return
	}
	log := n.log.With("container_id", id)
	// Event attributes hold the container's labels; a listing holds them
	// too, so the assignment is decoded without asking anyone.
	asg, err := Decode(labels)
	if err != nil {
		log.Warn("ignoring a task container", "error", err)
		return
	}
	out, err := n.outputDir(ctx, id, asg.GetRef())
	if err != nil {
		log.Warn("ignoring a task container", "error", err)
		n.forget(id) // try again after the next listing
		return
	}
	n.cfg.Handle(ctx, &Found{Assignment: asg, ContainerID: id, OutputDir: out, ctx: ctx, docker: n.cfg.Docker})
}

func (n *Node) forget(id string) {
	n.mu.Lock()
	delete(n.seen, id)
	n.mu.Unlock()
}

// outputDir is the node path of the container's output volume.
func (n *Node) outputDir(ctx context.Context, id string, ref *cloudmlv1.TaskRef) (string, error) {
	info, err := n.cfg.Docker.ContainerInspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("inspect container: %w", err)
	}
	for _, m := range info.Mounts {
		if m.Destination == OutputDir && m.Source != "" {
			return m.Source, nil
		}
	}
	v, err := n.cfg.Docker.VolumeInspect(ctx, Name(ref))
	if err != nil {
		return "", fmt.Errorf("inspect output volume: %w", err)
	}
	if v.Mountpoint == "" {
		return "", fmt.Errorf("output volume %s has no mountpoint", Name(ref))
	}
	return v.Mountpoint, nil
}
