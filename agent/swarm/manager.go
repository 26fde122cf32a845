package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/hashicorp/go-hclog"
)

var (
	// ErrOtherSwarm is wrapped when the node belongs to a swarm other than
	// the one it is asked to found or join.
	ErrOtherSwarm = errors.New("node belongs to another swarm")
	// ErrSwarmState is wrapped when the node's swarm state is pending,
	// error or locked: neither in a swarm nor free to join one.
	ErrSwarmState = errors.New("node's swarm state needs attention")
	// ErrBadRequest is wrapped when an init or join request is incomplete.
	ErrBadRequest = errors.New("invalid swarm request")
)

// DefaultJoinTimeout bounds a join when Manager.JoinTimeout is zero.
const DefaultJoinTimeout = 30 * time.Second

// Membership is a node's place in a swarm.
type Membership struct {
	// NodeID is the node's swarm node id.
	NodeID string
	// ClusterID is the swarm's id; only managers can read it.
	ClusterID string
	// Manager is true on a manager.
	Manager bool
	// ManagerAddr is host:port other nodes join through (managers only).
	ManagerAddr string
	// WorkerToken lets workers join (managers only). It is a secret.
	WorkerToken string
}

// Manager founds, joins and describes the node's swarm membership through
// the local Docker daemon. Its methods are safe to call concurrently; they
// run one at a time.
type Manager struct {
	// Docker is the node's daemon.
	Docker DockerAPI
	// Firewall is the node's firewall; nil leaves the firewall alone.
	Firewall Firewall
	// Logger logs progress (never tokens); nil discards.
	Logger hclog.Logger
	// JoinTimeout bounds a join; zero means DefaultJoinTimeout.
	JoinTimeout time.Duration
	// PendingWait bounds how long Init waits for a pending node (an init
	// under way) to settle; zero means DefaultPendingWait.
	PendingWait time.Duration

	mu sync.Mutex // serialises Init, Join and Current
}

func (m *Manager) log() hclog.Logger {
	if m.Logger == nil {
		return hclog.NewNullLogger()
	}
	return m.Logger
}

// Healthy returns nil when the daemon answers a ping.
func (m *Manager) Healthy(ctx context.Context) error {
	if _, err := m.Docker.Ping(ctx); err != nil {
		return fmt.Errorf("docker daemon at %s: %w", m.Docker.DaemonHost(), err)
	}
	return nil
}

// Current returns the node's membership and true when it is active in a
// swarm, false when it is in none. A pending, failed or locked node is an
// error wrapping ErrSwarmState.
func (m *Manager) Current(ctx context.Context) (Membership, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.swarmInfo(ctx)
	if err != nil {
		return Membership{}, false, err
	}
	switch s.LocalNodeState {
	case dswarm.LocalNodeStateInactive, "":
		return Membership{}, false, nil
	case dswarm.LocalNodeStateActive:
		mem, err := m.membership(ctx, s)
		return mem, err == nil, err
	default:
		return Membership{}, false, stateError(s)
	}
}

// swarmInfo reads the daemon's view of the node's swarm.
func (m *Manager) swarmInfo(ctx context.Context) (dswarm.Info, error) {
	info, err := m.Docker.Info(ctx)
	if err != nil {
		return dswarm.Info{}, fmt.Errorf("docker daemon at %s: %w", m.Docker.DaemonHost(), err)
	}
	return info.Swarm, nil
}

// membership describes an active node; a manager's includes the worker
// join token.
func (m *Manager) membership(ctx context.Context, s dswarm.Info) (Membership, error) {
	mem := Membership{NodeID: s.NodeID, Manager: s.ControlAvailable}
	if !s.ControlAvailable {
		return mem, nil
	}
	mem.ManagerAddr = withPort(s.NodeAddr)
	for _, p := range s.RemoteManagers {
		if p.NodeID == s.NodeID && p.Addr != "" {
			mem.ManagerAddr = p.Addr
		}
	}
	sw, err := m.Docker.SwarmInspect(ctx)
	if err != nil {
		return Membership{}, fmt.Errorf("inspect swarm: %w", err)
	}
	mem.ClusterID = sw.ID
	mem.WorkerToken = sw.JoinTokens.Worker
	return mem, nil
}

// fwState is what Firewall.Active answered.
type fwState struct {
	active bool
	err    error
}

// readState reads the node's swarm state and, at the same time, whether
// its firewall is active: an init or a join needs both, they do not
// depend on each other, and one after the other (docker info, then an
// iptables or ufw run) they were 75-95 ms before each init and join in
// the DigitalOcean bench's traces. It returns once both are read.
func (m *Manager) readState(ctx context.Context) (dswarm.Info, fwState, error) {
	fw := make(chan fwState, 1)
	if m.Firewall == nil {
		fw <- fwState{}
	} else {
		go func() {
			active, err := m.Firewall.Active(ctx)
			fw <- fwState{active: active, err: err}
		}()
	}
	s, err := m.swarmInfo(ctx)
	return s, <-fw, err
}

// openPorts admits the swarm ports from peers when the firewall is active
// (fw, from readState). A firewall whose state could not be read is left
// alone, with a warning.
func (m *Manager) openPorts(ctx context.Context, peers []string, fw fwState) error {
	if m.Firewall == nil {
		return nil
	}
	if fw.err != nil {
		m.log().Warn("cannot read the firewall state; leaving the swarm ports as they are", "error", fw.err)
		return nil
	}
	if !fw.active {
		return nil
	}
	if err := m.Firewall.Allow(ctx, SwarmPorts(peers)); err != nil {
		return fmt.Errorf("open swarm ports: %w", err)
	}
	m.log().Info("swarm ports open", "peers", peers)
	return nil
}

// stateError explains a pending, failed or locked node.
func stateError(s dswarm.Info) error {
	why := ""
	if s.Error != "" {
		why = " (" + s.Error + ")"
	}
	if s.LocalNodeState == dswarm.LocalNodeStateLocked {
		return fmt.Errorf("%w: the node's swarm is locked%s; unlock it with `docker swarm unlock`", ErrSwarmState, why)
	}
	return fmt.Errorf("%w: the node's swarm state is %q%s; reset it with `docker swarm leave --force`, or use a fresh node",
		ErrSwarmState, s.LocalNodeState, why)
}

// withPort adds the management port to a bare host.
func withPort(addr string) string {
	if addr == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(ManagementPort))
}

// hostOf returns the host of host or host:port.
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return strings.Trim(addr, "[]")
}
