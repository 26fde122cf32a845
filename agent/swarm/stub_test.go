package swarm

import (
	"context"
	"errors"
	"sync"

	"github.com/docker/docker/api/types"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// events records the calls of the stubs below, in order.
type events struct {
	mu   sync.Mutex // protects list
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, s)
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.list...)
}

// stubDocker is a DockerAPI whose calls are func fields (swarmkit's
// dockerexec stub style); a nil field answers with a zero value.
type stubDocker struct {
	ev        *events
	PingFn    func(ctx context.Context) (types.Ping, error)
	InfoFn    func(ctx context.Context) (system.Info, error)
	InitFn    func(ctx context.Context, req dswarm.InitRequest) (string, error)
	JoinFn    func(ctx context.Context, req dswarm.JoinRequest) error
	InspectFn func(ctx context.Context) (dswarm.Swarm, error)
	LeaveFn   func(ctx context.Context, force bool) error
}

var _ DockerAPI = (*stubDocker)(nil)

func (s *stubDocker) DaemonHost() string { return "unix:///stub.sock" }

func (s *stubDocker) Ping(ctx context.Context) (types.Ping, error) {
	s.ev.add("docker.ping")
	if s.PingFn == nil {
		return types.Ping{}, nil
	}
	return s.PingFn(ctx)
}

func (s *stubDocker) Info(ctx context.Context) (system.Info, error) {
	s.ev.add("docker.info")
	if s.InfoFn == nil {
		return system.Info{}, nil
	}
	return s.InfoFn(ctx)
}

func (s *stubDocker) SwarmInit(ctx context.Context, req dswarm.InitRequest) (string, error) {
	s.ev.add("docker.init")
	if s.InitFn == nil {
		return "", errors.New("unexpected init")
	}
	return s.InitFn(ctx, req)
}

func (s *stubDocker) SwarmJoin(ctx context.Context, req dswarm.JoinRequest) error {
	s.ev.add("docker.join")
	if s.JoinFn == nil {
		return errors.New("unexpected join")
	}
	return s.JoinFn(ctx, req)
}

func (s *stubDocker) SwarmInspect(ctx context.Context) (dswarm.Swarm, error) {
	s.ev.add("docker.inspect")
	if s.InspectFn == nil {
		return dswarm.Swarm{}, nil
	}
	return s.InspectFn(ctx)
}

func (s *stubDocker) SwarmLeave(ctx context.Context, force bool) error {
	s.ev.add("docker.leave")
	if s.LeaveFn == nil {
		return nil
	}
	return s.LeaveFn(ctx, force)
}

// fakeFirewall records what it is asked to allow.
type fakeFirewall struct {
	ev      *events
	active  bool
	mu      sync.Mutex // protects allowed
	allowed []Rule
}

func (f *fakeFirewall) Active(context.Context) (bool, error) {
	f.ev.add("firewall.active")
	return f.active, nil
}

func (f *fakeFirewall) Allow(_ context.Context, rules []Rule) error {
	f.ev.add("firewall.allow")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allowed = append(f.allowed, rules...)
	return nil
}

// swarmState is a mutable Info answer: the stub swarm moves from one state
// to the next as init and join succeed.
type swarmState struct {
	mu   sync.Mutex // protects info
	info dswarm.Info
}

func (s *swarmState) Info(context.Context) (system.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return system.Info{Swarm: s.info}, nil
}

func (s *swarmState) set(info dswarm.Info) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info = info
}
