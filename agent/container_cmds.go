package agent

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/agent/attempt"
	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/container"
	"github.com/cloudml/cloudml/agent/octave"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// octaveMount is where a task container finds the Octave startup file.
const octaveMount = "/cloudml/octave"

// containers is the agent's share of the swarm service machinery.
type containers struct {
	mu       sync.Mutex // protects the fields below
	manager  *container.Manager
	images   *container.Images    // made for the daemon imagesOf
	imagesOf *client.Client       // nil: the node has no daemon
	removals []*cloudmlv1.TaskRef // services to remove, in order
	kick     chan struct{}        // wakes the remover; capacity 1
	closed   bool                 // runContainers ended: no new work
	wg       sync.WaitGroup       // stagings and creations in flight
	// fetched counts the image bytes fetched from the coordinator, for
	// staging progress reports.
	fetched atomic.Int64
}

// begin registers a goroutine of container work; false once stopping.
func (c *containers) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// runContainers runs, while ctx lasts, the swarm service watch (used on a
// manager), the task container watch of this node and the service
// removals. Without a Docker daemon it only waits for staging work.
func (a *Agent) runContainers(ctx context.Context) {
	defer func() {
		a.ctr.mu.Lock()
		a.ctr.closed = true
		a.ctr.mu.Unlock()
		a.ctr.wg.Wait()
	}()
	mgr := a.serviceManager()
	if mgr == nil {
		<-ctx.Done()
		return
	}
	node := container.NewNode(container.NodeConfig{
		Docker: a.dockerClient(), Handle: a.attachContainer,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax, Logger: a.log.Named("containers"),
	})
	var wg sync.WaitGroup
	wg.Go(func() { mgr.Run(ctx) })
	wg.Go(func() { node.Run(ctx) })
	wg.Go(func() { a.removeServices(ctx, mgr) })
	wg.Wait()
}

// serviceManager returns the swarm service manager, making it on first
// use; nil when the agent has no Docker daemon.
func (a *Agent) serviceManager() *container.Manager {
	a.ctr.mu.Lock()
	defer a.ctr.mu.Unlock()
	if a.ctr.manager != nil {
		return a.ctr.manager
	}
	d := a.dockerClient()
	if d == nil {
		return nil
	}
	spec := container.SpecOptions{SwarmRoot: a.cfg.SwarmRoot}
	if env, err := octave.Install(filepath.Join(a.cfg.WorkDir, "octave")); err != nil {
		a.log.Error("cannot install the octave startup file; octave figures will not be saved", "error", err)
	} else if len(env) > 0 {
		// Every node installs it at start, so the bind source exists
		// wherever the swarm places a task.
		spec.Mounts = []mount.Mount{{Type: mount.TypeBind, ReadOnly: true, Target: octaveMount,
			Source: filepath.Join(a.cfg.SwarmRoot, "{{.Node.ID}}", "octave")}}
		spec.Env = octave.Env(octaveMount + "/" + octave.FileName)
	}
	a.ctr.manager = container.NewManager(container.ManagerConfig{
		Docker: d, Reporter: &a.node, Spec: spec, Watch: a.cfg.ServiceWatch,
		CallTimeout: a.cfg.CallTimeout, BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax,
		Logger: a.log.Named("services"),
	})
	return a.ctr.manager
}

// createService creates the swarm service of a swarm attempt; this node is
// the swarm manager. An attempt whose service cannot be made is reported
// failed.
func (a *Agent) createService(ctx context.Context, asg *cloudmlv1.Assignment) {
	if !a.ctr.begin() {
		return
	}
	go func() {
		defer a.ctr.wg.Done()
		log := a.log.With("job_id", asg.GetRef().GetJobId(), "task_index", asg.GetRef().GetTaskIndex(), "attempt", asg.GetRef().GetAttempt())
		mgr := a.serviceManager()
		if mgr == nil {
			_, why := a.swarmManager()
			a.failSwarmAttempt(ctx, asg, "this node cannot create swarm services: no Docker daemon ("+why+")")
			return
		}
		bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
		for {
			err := mgr.CreateService(ctx, asg)
			if err == nil || ctx.Err() != nil {
				return
			}
			if !container.Unreachable(err) {
				log.Error("cannot create the swarm service", "error", err)
				a.failSwarmAttempt(ctx, asg, err.Error())
				return
			}
			// The heartbeat reports the daemon down; try again meanwhile.
			log.Warn("docker daemon unreachable; will retry the service", "error", err)
			if bo.Wait(ctx) != nil {
				return
			}
		}
	}()
}

// failSwarmAttempt reports an attempt failed before it ran.
func (a *Agent) failSwarmAttempt(ctx context.Context, asg *cloudmlv1.Assignment, msg string) {
	rep := container.NewManager(container.ManagerConfig{Reporter: &a.node, CallTimeout: a.cfg.CallTimeout,
		BackoffMin: a.cfg.BackoffMin, BackoffMax: a.cfg.BackoffMax, Logger: a.log})
	if err := rep.ReportFailed(ctx, asg.GetRef(), msg); err != nil {
		a.log.Warn("failure report not acknowledged", "error", err)
	}
}

// removeService queues the removal of ref's service; Cancel is sent to the
// manager for swarm attempts (also after they ended, to clean up).
func (a *Agent) removeService(ref *cloudmlv1.TaskRef) {
	if ref == nil || a.dockerClient() == nil {
		return
	}
	a.ctr.mu.Lock()
	defer a.ctr.mu.Unlock()
	if a.ctr.kick == nil {
		a.ctr.kick = make(chan struct{}, 1)
	}
	a.ctr.removals = append(a.ctr.removals, ref)
	select {
	case a.ctr.kick <- struct{}{}:
	default:
	}
}

// removeServices carries out the queued removals until ctx ends.
func (a *Agent) removeServices(ctx context.Context, mgr *container.Manager) {
	a.ctr.mu.Lock()
	if a.ctr.kick == nil {
		a.ctr.kick = make(chan struct{}, 1)
	}
	kick := a.ctr.kick
	a.ctr.mu.Unlock()
	for {
		a.ctr.mu.Lock()
		refs := a.ctr.removals
		a.ctr.removals = nil
		a.ctr.mu.Unlock()
		for _, ref := range refs {
			err := mgr.RemoveService(ctx, ref)
			switch {
			case err == nil:
			case cerrdefs.IsUnavailable(err):
				// Not a swarm manager: the cancel was for a local attempt.
				a.log.Debug("not removing a service: not a swarm manager", "error", err)
			default:
				a.log.Warn("remove swarm service", "job_id", ref.GetJobId(), "task_index", ref.GetTaskIndex(), "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
	}
}

// attachContainer takes a task container swarm started on this node and
// runs its attempt through the attempt machinery, at most once per agent.
// When the attempt has been reported the container and its output volume
// are removed; when the agent stops first they are left for the next one.
func (a *Agent) attachContainer(ctx context.Context, f *container.Found) {
	ref := f.Assignment.GetRef()
	key := keyOf(ref)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.attempts[key]; ok {
		a.log.Debug("task container of a known attempt", "job_id", key.job, "task_index", key.task, "attempt", key.attempt)
		return
	}
	a.log.Info("task container found", "job_id", key.job, "task_index", key.task, "attempt", key.attempt, "container_id", f.ContainerID)
	at := attempt.NewAttached(a.attemptConfig(), f.Assignment, f.Attach())
	a.attempts[key] = at
	a.wg.Go(func() {
		at.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if err := f.Remove(ctx); err != nil {
			a.log.Warn("clean up task container", "container_id", f.ContainerID, "error", err)
		}
	})
}
