package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/agent/backoff"
	"github.com/cloudml/cloudml/agent/swarm"
	"github.com/cloudml/cloudml/internal/atomicfile"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// pingTimeout bounds the daemon pings at start and in heartbeats.
const pingTimeout = 2 * time.Second

// swarmState is the agent's Docker daemon and swarm membership.
type swarmState struct {
	mu      sync.Mutex // protects the fields below
	docker  *client.Client
	manager *swarm.Manager // nil without a daemon
	noneWhy string         // why there is no daemon
	member  swarm.Membership
	closed  bool           // stopDocker ran: no new swarm work
	wg      sync.WaitGroup // swarm goroutines in flight
	// announced is set once this session's membership was read and
	// reported, by an announcement or a swarm command (set as the command
	// starts, unset if it reports a failure); a daemon that did not answer
	// leaves it unset, so the next healthy heartbeat announces it.
	announced bool
	// announcing ends the announcement under way (nil when none): a swarm
	// command supersedes it rather than wait behind its daemon read.
	announcing *context.CancelFunc
	// reportMu orders the membership reports: an announcement and an init
	// or join each read the daemon and report under it, so the coordinator
	// never gets an older membership after a newer one.
	reportMu sync.Mutex
}

// begin registers a swarm goroutine; false once the agent is stopping.
func (s *swarmState) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// startDocker connects to the node's daemon (Config.Docker) if it has one.
// A daemon that does not answer yet is kept: heartbeats report it down and
// swarm commands fail with the daemon's error until it answers. The first
// ping only logs whether it answers, so it runs beside the registration
// rather than before it: on a new droplet the swarm init waits for the
// registration, not for the daemon's first answer (stopDocker waits for
// it).
func (a *Agent) startDocker(ctx context.Context) {
	s := &a.sw
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = false
	if a.cfg.Docker == "" {
		s.noneWhy = "the agent was started without a Docker daemon address"
		return
	}
	c, err := swarm.NewDocker(a.cfg.Docker)
	if err != nil {
		s.noneWhy = err.Error()
		a.log.Error("cannot use the docker daemon", "host", a.cfg.Docker, "error", err)
		return
	}
	s.docker = c
	m := &swarm.Manager{Docker: c, Firewall: a.cfg.Firewall, Logger: a.log.Named("swarm")}
	s.manager = m
	s.wg.Go(func() {
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		defer cancel()
		if err := m.Healthy(pctx); err != nil {
			a.log.Warn("docker daemon does not answer yet", "error", err)
			return
		}
		a.log.Info("docker daemon found", "host", c.DaemonHost())
	})
}

// stopDocker waits for the swarm goroutines and closes a daemon client
// made by startDocker.
func (a *Agent) stopDocker() {
	s := &a.sw
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.docker != nil {
		s.docker.Close()
	}
	s.docker, s.manager = nil, nil
}

// swarmManager returns the swarm manager, or nil and why there is none.
func (a *Agent) swarmManager() (*swarm.Manager, string) {
	a.sw.mu.Lock()
	defer a.sw.mu.Unlock()
	return a.sw.manager, a.sw.noneWhy
}

// dockerClient is the node's daemon, nil when the agent has none.
func (a *Agent) dockerClient() *client.Client {
	a.sw.mu.Lock()
	defer a.sw.mu.Unlock()
	return a.sw.docker
}

// swarmNodeID is the node's swarm node id, "" until it is in a swarm.
func (a *Agent) swarmNodeID() string {
	a.sw.mu.Lock()
	defer a.sw.mu.Unlock()
	return a.sw.member.NodeID
}

// swarmInit founds the swarm on this node and reports it.
func (a *Agent) swarmInit(ctx context.Context, client cloudmlv1.AgentServiceClient, cmd *cloudmlv1.SwarmInit) {
	a.swarmCommand(ctx, client, "init", func(m *swarm.Manager) (swarm.Membership, error) {
		return m.Init(ctx, cmd.GetAdvertiseAddr(), cmd.GetPeerCidrs())
	})
}

// swarmJoin joins this node to the swarm and reports it.
func (a *Agent) swarmJoin(ctx context.Context, client cloudmlv1.AgentServiceClient, cmd *cloudmlv1.SwarmJoin) {
	a.swarmCommand(ctx, client, "join", func(m *swarm.Manager) (swarm.Membership, error) {
		return m.Join(ctx, cmd.GetManagerAddrs(), cmd.GetJoinToken(), cmd.GetAdvertiseAddr(), cmd.GetPeerCidrs())
	})
}

// swarmCommand runs an init or join and reports the outcome.
func (a *Agent) swarmCommand(ctx context.Context, client cloudmlv1.AgentServiceClient, what string,
	do func(*swarm.Manager) (swarm.Membership, error)) {
	if !a.sw.begin() {
		return
	}
	defer a.sw.wg.Done()
	// The command's report announces the membership: an announcement
	// under way or asked for gives way (announceSwarm).
	a.sw.mu.Lock()
	a.sw.announced = true
	if a.sw.announcing != nil {
		(*a.sw.announcing)()
	}
	a.sw.mu.Unlock()
	a.sw.reportMu.Lock()
	defer a.sw.reportMu.Unlock()
	m, why := a.swarmManager()
	if m == nil {
		a.unannounced()
		a.reportSwarm(ctx, client, &cloudmlv1.ReportSwarmRequest{Error: "no Docker daemon on this node: " + why})
		return
	}
	mem, err := do(m)
	if ctx.Err() != nil {
		a.unannounced()
		return
	}
	if err != nil {
		a.unannounced()
		a.log.Error("swarm "+what+" failed", "error", err)
		a.reportSwarm(ctx, client, &cloudmlv1.ReportSwarmRequest{Error: err.Error()})
		return
	}
	a.adoptMembership(mem)
	a.reportSwarm(ctx, client, membershipReport(mem))
}

// unannounced makes the next healthy heartbeat announce the membership: a
// swarm command failed, and its report said nothing of it.
func (a *Agent) unannounced() {
	a.sw.mu.Lock()
	defer a.sw.mu.Unlock()
	a.sw.announced = false
}

// announceSwarm reports the node's membership at the start of a session,
// and again when its daemon answers after it did not (always): in a swarm
// (a restarted agent announces itself) or in none (an empty report: the
// daemon was replaced or left the swarm, and the coordinator forms it
// again). When the daemon does not answer, the next healthy heartbeat
// tries again. A swarm command supersedes it (the coordinator asks a new
// node to init or join as its session opens): the command cancels the
// announcement's daemon read rather than wait behind it, and unless always
// an announcement that finds the membership reported by a command since
// it was asked for is not made.
func (a *Agent) announceSwarm(ctx context.Context, client cloudmlv1.AgentServiceClient, always bool) {
	if !a.sw.begin() {
		return
	}
	defer a.sw.wg.Done()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.sw.mu.Lock()
	a.sw.announcing = &cancel
	a.sw.mu.Unlock()
	defer func() {
		a.sw.mu.Lock()
		if a.sw.announcing == &cancel {
			a.sw.announcing = nil
		}
		a.sw.mu.Unlock()
	}()
	a.sw.reportMu.Lock()
	defer a.sw.reportMu.Unlock()
	a.sw.mu.Lock()
	reported := a.sw.announced && !always
	a.sw.mu.Unlock()
	m, _ := a.swarmManager()
	if m == nil || reported {
		return
	}
	mem, ok, err := m.Current(actx)
	if actx.Err() != nil && ctx.Err() == nil {
		a.log.Debug("a swarm command superseded the membership announcement")
		return
	}
	if err != nil {
		a.log.Warn("cannot read the node's swarm membership", "error", err)
		return
	}
	a.sw.mu.Lock()
	a.sw.announced = true
	a.sw.mu.Unlock()
	if !ok {
		a.sw.mu.Lock()
		was := a.sw.member.NodeID
		a.sw.member = swarm.Membership{}
		a.sw.mu.Unlock()
		if was != "" {
			a.log.Warn("the node is no longer in its swarm", "swarm_node_id", was)
		}
		a.reportSwarm(ctx, client, &cloudmlv1.ReportSwarmRequest{})
		return
	}
	a.adoptMembership(mem)
	a.reportSwarm(ctx, client, membershipReport(mem))
}

// reannounce reports whether the membership should be announced again
// after a heartbeat that saw runtimeErr, the one before having seen prev:
// when the daemon answers again, or answers and was never read.
func (a *Agent) reannounce(prev, runtimeErr string) bool {
	if runtimeErr != "" {
		return false
	}
	a.sw.mu.Lock()
	defer a.sw.mu.Unlock()
	return a.sw.manager != nil && (prev != "" || !a.sw.announced)
}

// adoptMembership records mem and links the node's swarm directory.
func (a *Agent) adoptMembership(mem swarm.Membership) {
	a.sw.mu.Lock()
	a.sw.member = swarm.Membership{NodeID: mem.NodeID, ClusterID: mem.ClusterID, Manager: mem.Manager, ManagerAddr: mem.ManagerAddr}
	a.sw.mu.Unlock()
	if err := linkSwarmDir(a.cfg.SwarmRoot, mem.NodeID, a.cfg.WorkDir); err != nil {
		a.log.Error("cannot link the swarm node's directory; its task containers will not find the cache", "error", err)
		return
	}
	a.log.Info("in swarm", "swarm_node_id", mem.NodeID, "manager", mem.Manager)
}

func membershipReport(mem swarm.Membership) *cloudmlv1.ReportSwarmRequest {
	req := &cloudmlv1.ReportSwarmRequest{SwarmNodeId: mem.NodeID, ClusterId: mem.ClusterID, Role: cloudmlv1.SwarmRole_SWARM_ROLE_WORKER}
	if mem.Manager {
		req.Role = cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER
		req.ManagerAddr, req.WorkerJoinToken = mem.ManagerAddr, mem.WorkerToken
	}
	return req
}

// reportSwarm calls ReportSwarm until it is acknowledged, ctx ends or the
// coordinator refuses it for good.
func (a *Agent) reportSwarm(ctx context.Context, client cloudmlv1.AgentServiceClient, req *cloudmlv1.ReportSwarmRequest) {
	a.untilAcked(ctx, client, a.log, "swarm report", func(ctx context.Context, c cloudmlv1.AgentServiceClient) error {
		_, err := c.ReportSwarm(ctx, req)
		return err
	})
}

// untilAcked makes a report call until the coordinator acknowledges it, ctx
// ends, or the coordinator refuses it for good. Each try uses the current
// node connection (falling back to client) and its own call timeout.
func (a *Agent) untilAcked(ctx context.Context, client cloudmlv1.AgentServiceClient, log hclog.Logger, what string, call func(context.Context, cloudmlv1.AgentServiceClient) error) {
	bo := backoff.New(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for {
		c := a.node.current()
		if c == nil {
			c = client
		}
		callCtx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
		err := call(callCtx, c)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			return
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unimplemented, codes.FailedPrecondition, codes.NotFound:
			log.Error("coordinator refused the "+what, "error", err)
			return
		}
		log.Warn(what+" failed; retrying", "error", err)
		if bo.Wait(ctx) != nil {
			return
		}
	}
}

// runtimeError is empty while the node's Docker daemon answers, or when
// the agent uses none.
func (a *Agent) runtimeError(ctx context.Context) string {
	m, _ := a.swarmManager()
	if m == nil {
		return ""
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := m.Healthy(pctx); err != nil {
		return err.Error()
	}
	return ""
}

// linkSwarmDir points root/nodeID at workDir, replacing an older link
// atomically.
func linkSwarmDir(root, nodeID, workDir string) error {
	if nodeID == "" || nodeID == "." || nodeID == ".." || strings.ContainsAny(nodeID, `/\`) {
		return fmt.Errorf("link swarm dir: bad swarm node id %q", nodeID)
	}
	target, err := filepath.Abs(workDir)
	if err != nil {
		return fmt.Errorf("link swarm dir: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("link swarm dir: %w", err)
	}
	if err := atomicfile.Symlink(target, filepath.Join(root, nodeID)); err != nil {
		return fmt.Errorf("link swarm dir: %w", err)
	}
	return nil
}

// runtimeName is what the node reports as its runtime: "docker" when it can
// run container jobs (and join the swarm), else the process runtime's name.
func (a *Agent) runtimeName() string {
	if a.dockerClient() != nil {
		return "docker"
	}
	return a.rt.Name()
}
