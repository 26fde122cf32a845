package swarm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
)

// errDaemonJoinTimeout replaces the daemon's timeout message, which says
// the join goes on in the background: Join abandons it.
var errDaemonJoinTimeout = errors.New("join abandoned")

// listenAddr is where a node listens for swarm management traffic.
const listenAddr = "0.0.0.0:2377"

// Init founds a swarm on this node, advertised at advertiseAddr (host or
// host:port; the port defaults to 2377), after opening the swarm ports to
// peers (CIDRs; none means anywhere) if the firewall is active. A node that
// already manages a swarm at that address is left alone (an agent restart,
// or the swarm its machine's bootstrap founded) and its membership
// returned; a pending one (an init under way) is waited for first.
func (m *Manager) Init(ctx context.Context, advertiseAddr string, peers []string) (Membership, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	advertise := withPort(advertiseAddr)
	s, fw, err := m.readState(ctx)
	if err != nil {
		return Membership{}, err
	}
	if s.LocalNodeState == dswarm.LocalNodeStatePending {
		// An init under way: a machine made to found the swarm starts one
		// as it boots (cloudinit.Config.FoundSwarm), beside the download
		// of this agent. What it settles to decides.
		if s, err = m.settle(ctx); err != nil {
			return Membership{}, err
		}
	}
	switch s.LocalNodeState {
	case dswarm.LocalNodeStateInactive, "":
	case dswarm.LocalNodeStateActive:
		if err := initConflict(s, advertise); err != nil {
			return Membership{}, err
		}
		if err := m.openPorts(ctx, peers, fw); err != nil {
			return Membership{}, err
		}
		mem, err := m.membership(ctx, s)
		if err == nil {
			m.log().Info("node already manages the swarm; leaving it as it is", "swarm_node_id", mem.NodeID, "cluster_id", mem.ClusterID)
		}
		return mem, err
	default:
		return Membership{}, stateError(s)
	}
	if err := m.openPorts(ctx, peers, fw); err != nil {
		return Membership{}, err
	}
	start := time.Now()
	if _, err := m.Docker.SwarmInit(ctx, dswarm.InitRequest{ListenAddr: listenAddr, AdvertiseAddr: advertise}); err != nil {
		return Membership{}, fmt.Errorf("init swarm advertised at %s: %w", advertise, err)
	}
	if s, err = m.swarmInfo(ctx); err != nil {
		return Membership{}, err
	}
	mem, err := m.membership(ctx, s)
	if err != nil {
		return Membership{}, err
	}
	m.log().Info("swarm initialised", "swarm_node_id", mem.NodeID, "cluster_id", mem.ClusterID,
		"manager_addr", mem.ManagerAddr, "took", time.Since(start))
	return mem, nil
}

// DefaultPendingWait bounds Init's wait for a pending node when
// Manager.PendingWait is zero: an init settles in about a second.
const DefaultPendingWait = 30 * time.Second

// settle reads the node's swarm state until it is no longer pending, for
// at most PendingWait; a node still pending then is returned as it is.
func (m *Manager) settle(ctx context.Context) (dswarm.Info, error) {
	wait := m.PendingWait
	if wait <= 0 {
		wait = DefaultPendingWait
	}
	m.log().Info("the node's swarm state is pending (an init under way?); waiting for it to settle", "for", wait)
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-ctx.Done():
			return dswarm.Info{}, ctx.Err()
		case <-time.After(20 * time.Millisecond): // the init ends in about a second; each poll is one docker info
		}
		s, err := m.swarmInfo(ctx)
		if err != nil || s.LocalNodeState != dswarm.LocalNodeStatePending || time.Now().After(deadline) {
			return s, err
		}
	}
}

// initConflict is nil when an active node can stand for the swarm Init
// would found: it manages a swarm and advertises the same address.
func initConflict(s dswarm.Info, advertise string) error {
	cluster := "?"
	if s.Cluster != nil {
		cluster = s.Cluster.ID
	}
	if !s.ControlAvailable {
		return fmt.Errorf("%w: this node is already a worker in swarm with managers %s; "+
			"run `docker swarm leave --force` on it, or use a fresh node", ErrOtherSwarm, peerAddrs(s.RemoteManagers))
	}
	want := hostOf(advertise)
	if _, err := netip.ParseAddr(want); err == nil && s.NodeAddr != "" && s.NodeAddr != want {
		return fmt.Errorf("%w: this node already manages swarm %s advertised at %s, not %s; "+
			"run `docker swarm leave --force` on it, or use a fresh node", ErrOtherSwarm, cluster, s.NodeAddr, want)
	}
	return nil
}

// Join joins the swarm managed at managerAddrs (host or host:port) with a
// join token, advertising advertiseAddr, after opening the swarm ports to
// peers if the firewall is active. A node already in that swarm is left
// alone; one in another swarm is an error wrapping ErrOtherSwarm. A failed
// join is abandoned, so the node can try again.
func (m *Manager) Join(ctx context.Context, managerAddrs []string, token, advertiseAddr string, peers []string) (Membership, error) {
	if len(managerAddrs) == 0 || token == "" {
		return Membership{}, fmt.Errorf("%w: a join needs manager addresses and a join token", ErrBadRequest)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	remotes := make([]string, len(managerAddrs))
	for i, a := range managerAddrs {
		remotes[i] = withPort(a)
	}
	where := strings.Join(remotes, ",")
	s, fw, err := m.readState(ctx)
	if err != nil {
		return Membership{}, err
	}
	switch s.LocalNodeState {
	case dswarm.LocalNodeStateInactive, "":
	case dswarm.LocalNodeStateActive:
		if !sameSwarm(s, remotes, token) {
			return Membership{}, fmt.Errorf("%w: this node is already in a swarm (node %s, managers %s), not the one at %s; "+
				"run `docker swarm leave --force` on it, or use a fresh node", ErrOtherSwarm, s.NodeID, peerAddrs(s.RemoteManagers), where)
		}
		if err := m.openPorts(ctx, peers, fw); err != nil {
			return Membership{}, err
		}
		m.log().Info("node already in the swarm; leaving it as it is", "swarm_node_id", s.NodeID)
		return m.membership(ctx, s)
	default:
		return Membership{}, stateError(s)
	}
	if err := m.openPorts(ctx, peers, fw); err != nil {
		return Membership{}, err
	}
	timeout := m.JoinTimeout
	if timeout <= 0 {
		timeout = DefaultJoinTimeout
	}
	start := time.Now()
	jctx, cancel := context.WithTimeout(ctx, timeout)
	err = m.Docker.SwarmJoin(jctx, dswarm.JoinRequest{
		ListenAddr: listenAddr, AdvertiseAddr: advertiseAddr, RemoteAddrs: remotes, JoinToken: token,
	})
	timedOut := jctx.Err() != nil && ctx.Err() == nil
	cancel()
	if err != nil {
		if timedOut {
			err = fmt.Errorf("no answer within %v: %w", timeout, err)
		}
		m.abandonJoin(ctx)
		return Membership{}, joinError(where, err, token)
	}
	if s, err = m.swarmInfo(ctx); err != nil {
		return Membership{}, err
	}
	mem, err := m.membership(ctx, s)
	if err != nil {
		return Membership{}, err
	}
	m.log().Info("joined swarm", "swarm_node_id", mem.NodeID, "manager_addrs", where, "took", time.Since(start))
	return mem, nil
}

// sameSwarm reports whether an active node belongs to the swarm at remotes:
// one of its managers is among them, or (on a manager) its root CA is the
// one the token pins.
func sameSwarm(s dswarm.Info, remotes []string, token string) bool {
	for _, p := range s.RemoteManagers {
		for _, r := range remotes {
			if p.Addr == r {
				return true
			}
		}
	}
	if s.Cluster != nil && s.Cluster.TLSInfo.TrustRoot != "" {
		if d, ok := tokenCADigest(token); ok && d == caDigest(s.Cluster.TLSInfo.TrustRoot) {
			return true
		}
	}
	return false
}

// abandonJoin leaves a join the daemon goes on trying in the background
// after its own timeout, so the node is free to try again.
func (m *Manager) abandonJoin(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultJoinTimeout)
	defer cancel()
	s, err := m.swarmInfo(lctx)
	if err != nil || s.LocalNodeState != dswarm.LocalNodeStatePending {
		return
	}
	if err := m.Docker.SwarmLeave(lctx, true); err != nil {
		m.log().Warn("cannot abandon the failed join", "error", err)
	}
}

// joinError words a failed join; unless the token was refused, the cause
// is most often a closed port.
func joinError(where string, err error, token string) error {
	if strings.Contains(err.Error(), token) { // never let the secret out
		err = errors.New(strings.ReplaceAll(err.Error(), token, "<join token>"))
	}
	if strings.Contains(err.Error(), "Timeout was reached before node joined") {
		// The daemon's own 20s bound; the background attempt it mentions
		// has been abandoned.
		err = fmt.Errorf("the manager did not answer within the daemon's join timeout: %w", errDaemonJoinTimeout)
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "token") || errors.Is(err, context.Canceled) {
		return fmt.Errorf("join swarm at %s: %w", where, err)
	}
	return fmt.Errorf("join swarm at %s: %w (is %d/tcp open on the manager and this node?)", where, err, ManagementPort)
}

func peerAddrs(peers []dswarm.Peer) string {
	if len(peers) == 0 {
		return "unknown"
	}
	addrs := make([]string, len(peers))
	for i, p := range peers {
		addrs[i] = p.Addr
	}
	return strings.Join(addrs, ",")
}
