package container

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/agent/backoff"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Reporter reports an attempt's state to the coordinator.
type Reporter interface {
	ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, opts ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error)
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Docker is the swarm manager's daemon.
	Docker Docker
	// Reporter reports attempts that fail before a container starts.
	Reporter Reporter
	// Spec is the node-independent part of every service spec.
	Spec SpecOptions
	// Watch bounds how long a new service is watched for a placement
	// failure; default 10m. A service still pending then is left to wait.
	Watch time.Duration
	// Poll is the interval between task listings; default 500ms.
	Poll time.Duration
	// CallTimeout bounds each call; default 10s.
	CallTimeout time.Duration
	// BackoffMin and BackoffMax bound report retries; defaults 200ms, 10s.
	BackoffMin, BackoffMax time.Duration
	// Logger receives manager events; nil discards them.
	Logger hclog.Logger
}

func (c *ManagerConfig) setDefaults() {
	for _, d := range []struct {
		v *time.Duration
		d time.Duration
	}{{&c.Watch, 10 * time.Minute}, {&c.Poll, 500 * time.Millisecond}, {&c.CallTimeout, 10 * time.Second},
		{&c.BackoffMin, 200 * time.Millisecond}, {&c.BackoffMax, 10 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.d
		}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Manager creates and removes the services of swarm attempts, and reports
// the attempts whose task the swarm could not start.
type Manager struct {
	cfg  ManagerConfig
	log  hclog.Logger
	kick chan struct{} // wakes Run when a watch is added

	mu      sync.Mutex // protects watched
	watched map[string]*watch
	wg      sync.WaitGroup // failure reports in flight
}

// watch is a service waiting for its container to start.
type watch struct {
	asg       *cloudmlv1.Assignment
	serviceID string
	until     time.Time
}

// NewManager returns a Manager; Run carries out its watches.
func NewManager(cfg ManagerConfig) *Manager {
	cfg.setDefaults()
	return &Manager{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), watched: map[string]*watch{}}
}

// CreateService creates the service of asg's attempt (see the package
// documentation) and watches it until its container starts. A service
// that exists already is left as it is.
func (m *Manager) CreateService(ctx context.Context, asg *cloudmlv1.Assignment) error {
	spec, err := ServiceSpec(asg, m.cfg.Spec)
	if err != nil {
		return err
	}
	name := spec.Annotations.Name
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	resp, err := m.cfg.Docker.ServiceCreate(cctx, spec, swarm.ServiceCreateOptions{})
	id := resp.ID
	if err != nil {
		existing, lerr := m.find(cctx, name)
		if lerr != nil || existing == "" {
			return fmt.Errorf("create service %s: %w", name, err)
		}
		m.log.Debug("service exists already", "service", name)
		id = existing
	} else {
		m.log.Info("service created", "service", name, "service_id", id)
	}
	m.mu.Lock()
	if _, ok := m.watched[name]; !ok {
		m.watched[name] = &watch{asg: asg, serviceID: id, until: time.Now().Add(m.cfg.Watch)}
	}
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
	return nil
}

// find returns the id of the service called name, or "".
func (m *Manager) find(ctx context.Context, name string) (string, error) {
	list, err := m.cfg.Docker.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return "", err
	}
	for _, s := range list {
		if s.Spec.Name == name { // the name filter matches prefixes
			return s.ID, nil
		}
	}
	return "", nil
}

// RemoveService removes the service of ref's attempt (which stops its
// container); a service that is gone already is not an error.
func (m *Manager) RemoveService(ctx context.Context, ref *cloudmlv1.TaskRef) error {
	name := Name(ref)
	m.mu.Lock()
	delete(m.watched, name)
	m.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	if err := m.cfg.Docker.ServiceRemove(cctx, name); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove service %s: %w", name, err)
	}
	m.log.Debug("service removed", "service", name)
	return nil
}

// Run polls the tasks of the watched services until ctx ends, then waits
// for the failure reports in flight.
func (m *Manager) Run(ctx context.Context) {
	defer m.wg.Wait()
	t := time.NewTicker(m.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		m.poll(ctx)
	}
}

// poll lists the tasks of every watched service at once and settles the
// services whose task started, or could not.
func (m *Manager) poll(ctx context.Context) {
	m.mu.Lock()
	if len(m.watched) == 0 {
		m.mu.Unlock()
		return
	}
	args := filters.NewArgs()
	byID := map[string]string{}
	now := time.Now()
	for name, w := range m.watched {
		if now.After(w.until) {
			m.log.Info("service still not started; no longer watching it", "service", name)
			delete(m.watched, name)
			continue
		}
		args.Add("service", w.serviceID)
		byID[w.serviceID] = name
	}
	m.mu.Unlock()
	if len(byID) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.CallTimeout)
	defer cancel()
	tasks, err := m.cfg.Docker.TaskList(cctx, swarm.TaskListOptions{Filters: args})
	if err != nil {
		m.log.Warn("list service tasks", "error", err)
		return
	}
	for _, t := range tasks {
		name, ok := byID[t.ServiceID]
		if !ok {
			continue
		}
		switch {
		case started(t):
			m.settle(name)
		case failedToStart(t):
			if w := m.settle(name); w != nil {
				m.wg.Go(func() { m.fail(ctx, w, t) })
			}
		}
	}
}

// settle stops watching name and returns its watch (nil if it had none).
func (m *Manager) settle(name string) *watch {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.watched[name]
	delete(m.watched, name)
	return w
}

// started: the container started, so the node's agent has it.
func started(t swarm.Task) bool {
	switch t.Status.State {
	case swarm.TaskStateRunning, swarm.TaskStateComplete:
		return true
	case swarm.TaskStateFailed, swarm.TaskStateShutdown:
		return !failedToStart(t)
	}
	return false
}

// failedToStart: the node refused the task (no such image, a bad mount) or
// its container could not start; no agent will ever see it run.
func failedToStart(t swarm.Task) bool {
	switch t.Status.State {
	case swarm.TaskStateRejected:
		return true
	case swarm.TaskStateFailed:
		return strings.HasPrefix(t.Status.Err, "starting container failed")
	}
	return false
}

// fail reports w's attempt failed, then removes its service.
func (m *Manager) fail(ctx context.Context, w *watch, t swarm.Task) {
	msg := m.failureMessage(ctx, w.asg, t)
	log := m.log.With("job_id", w.asg.GetRef().GetJobId(), "task_index", w.asg.GetRef().GetTaskIndex(), "attempt", w.asg.GetRef().GetAttempt())
	log.Warn("swarm could not start the task", "error", t.Status.Err)
	req := &cloudmlv1.ReportTaskRequest{
		Ref: w.asg.GetRef(), State: cloudmlv1.TaskState_TASK_STATE_FAILED, ExitCode: -1,
		Message: msg, Time: timestamppb.Now(),
	}
	if err := report(ctx, m.cfg, req); err != nil {
		log.Warn("failure report not acknowledged", "error", err)
	}
	if err := m.RemoveService(ctx, w.asg.GetRef()); err != nil {
		log.Warn("remove service", "error", err)
	}
}

// report sends req until the coordinator answers (FAILED_PRECONDITION
// counts: it has settled the attempt otherwise) or ctx ends.
func report(ctx context.Context, cfg ManagerConfig, req *cloudmlv1.ReportTaskRequest) error {
	bo := backoff.New(cfg.BackoffMin, cfg.BackoffMax)
	for {
		cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		_, err := cfg.Reporter.ReportTask(cctx, req)
		cancel()
		if err == nil || status.Code(err) == codes.FailedPrecondition {
			return nil
		}
		if werr := bo.Wait(ctx); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// ReportFailed reports ref's attempt failed before it ran, retrying until
// the coordinator answers or ctx ends.
func (m *Manager) ReportFailed(ctx context.Context, ref *cloudmlv1.TaskRef, msg string) error {
	return report(ctx, m.cfg, &cloudmlv1.ReportTaskRequest{
		Ref: ref, State: cloudmlv1.TaskState_TASK_STATE_FAILED, ExitCode: -1, Message: msg, Time: timestamppb.Now(),
	})
}
