package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Swarm formation. The first node whose agent runs Docker founds the swarm
// (SwarmInit); every other Docker node joins it (SwarmJoin) with the worker
// token the manager reported. The token lives only in memory and on the
// authenticated sessions: after a restart the manager's agent reports it
// again when its session opens.

// runtimeDocker is the runtime name of agents that run containers.
const runtimeDocker = "docker"

// Swarm roles as stored on nodes.
const (
	roleManager = "manager"
	roleWorker  = "worker"
)

// swarmState is what the coordinator knows of the swarm. Protected by c.mu.
type swarmState struct {
	manager     string          // node id of the manager, "" before one reported
	managerAddr string          // host:port workers join through
	token       string          // worker join token
	initNode    string          // node asked to found the swarm, while pending
	asked       map[string]bool // nodes sent init or join in their current session
	// reported are the nodes whose agents reported their membership to
	// this process: a node's stored membership may be stale after a
	// restart (its daemon replaced), so the swarm's work waits for it.
	reported map[string]bool
	// passedOver is the machine made to found the swarm as it boots whose
	// node was asked and failed: it is a node like any other now.
	passedOver string
}

// ReportSwarm records a node's swarm membership.
func (s *agentServer) ReportSwarm(ctx context.Context, req *cloudmlv1.ReportSwarmRequest) (*cloudmlv1.ReportSwarmResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.c.reportSwarm(id, req); err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.ReportSwarmResponse{}, nil
}

func (c *Coordinator) reportSwarm(id string, req *cloudmlv1.ReportSwarmRequest) error {
	return c.locked(func() error { return c.reportSwarmLocked(id, req) })
}

// reportSwarmLocked is reportSwarm's work under c.mu.
func (c *Coordinator) reportSwarmLocked(id string, req *cloudmlv1.ReportSwarmRequest) error {
	n := c.nodes[id]
	if n == nil {
		return errorf(ErrUnauthenticated, "unknown node %s; register again", id)
	}
	manager := req.GetRole() == cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER
	if manager && id != c.swarm.initNode && id != c.swarm.manager && n.rec.SwarmRole != roleManager {
		// Only the node the coordinator asked to found the swarm may say it
		// manages it: workers join the address and token it reports.
		c.log.Warn("refused a swarm manager report from a node not chosen as manager", "node_id", id, "manager", c.swarm.manager)
		return errorf(ErrPermissionDenied, "node %s was not chosen as the swarm's manager", id)
	}
	ch := newChanges()
	now := time.Now()
	switch {
	case req.GetError() != "":
		n.rec.Message = "swarm: " + req.GetError()
		if c.swarm.initNode == id {
			c.swarm.initNode = ""
			if n.rec.ProviderID != "" && n.rec.ProviderID == c.swarmFounder() {
				c.swarm.passedOver = n.rec.ProviderID
			}
		}
		c.log.Warn("node could not enter the swarm", "node_id", id, "error", req.GetError())
	case req.GetSwarmNodeId() == "":
		// In no swarm: its daemon was replaced (a restarted dockerd with a
		// fresh data root, or a coordinator restart on the netns provider)
		// or left. An init asked for in this session may still be running.
		if c.swarm.initNode != id {
			c.leftSwarm(ch, n, "is in no swarm", now)
		}
	default:
		if n.rec.SwarmNodeID != "" && n.rec.SwarmNodeID != req.GetSwarmNodeId() {
			c.leftSwarm(ch, n, "is another swarm node now ("+req.GetSwarmNodeId()+")", now)
		}
		n.rec.SwarmNodeID = req.GetSwarmNodeId()
		n.rec.SwarmRole = roleWorker
		if c.swarm.reported == nil {
			c.swarm.reported = map[string]bool{}
		}
		c.swarm.reported[id] = true
		n.rec.Message = ""
		if manager {
			n.rec.SwarmRole = roleManager
			c.swarm.manager, c.swarm.initNode = id, ""
			if req.GetManagerAddr() != "" {
				c.swarm.managerAddr = req.GetManagerAddr()
			}
			if req.GetWorkerJoinToken() != "" {
				c.swarm.token = req.GetWorkerJoinToken()
			}
		} else if c.swarm.manager == id {
			c.forgetManager(ch, n, "is a worker now", now)
		}
		c.log.Info("node in the swarm", "node_id", id, "swarm_node_id", n.rec.SwarmNodeID, "role", n.rec.SwarmRole)
	}
	ch.node(n.rec)
	if err := c.commit(ch); err != nil {
		return err
	}
	c.formSwarm()
	c.poke()
	return nil
}

// leftSwarm forgets n's old membership after its agent reported it in no
// swarm or as another swarm node: the containers it ran went with its old
// daemon, so its claimed swarm attempts are lost (rescheduled, no retry
// used); if it was the manager, the swarm is gone and is formed again; and
// it stages every job again, as its images went too. Callers hold c.mu.
func (c *Coordinator) leftSwarm(ch *changes, n *nodeEntry, why string, now time.Time) {
	id := n.rec.ID
	if n.rec.SwarmNodeID != "" {
		c.log.Warn("node left its swarm", "node_id", id, "swarm_node_id", n.rec.SwarmNodeID, "now", why)
	}
	lost := fmt.Sprintf("the swarm node on %s went away (it %s)", id, why)
	for _, j := range c.jobs {
		delete(j.staging, id)
		delete(j.stageBytes, id)
	}
	c.eachActive(func(j *jobEntry, a *store.Attempt) {
		if a.Swarm && a.NodeID == id {
			c.loseAttempt(ch, j, a, fmt.Sprintf("%s during attempt %d", lost, a.Attempt), now)
		}
	})
	if c.swarm.manager == id || n.rec.SwarmRole == roleManager {
		c.forgetManager(ch, n, why, now)
	}
	n.rec.SwarmNodeID, n.rec.SwarmRole = "", ""
	delete(c.swarm.asked, id) // ask it again, in this session too
	delete(c.swarm.reported, id)
	ch.node(n.rec)
}

// forgetManager drops n as the swarm's manager: its address and token lead
// nowhere now, and the services it was asked to create and no node claimed
// went with its swarm (lost, rescheduled with no retry used). The next
// node outside the swarm is asked to found it again. Callers hold c.mu.
func (c *Coordinator) forgetManager(ch *changes, n *nodeEntry, why string, now time.Time) {
	id := n.rec.ID
	c.log.Warn("the swarm manager is gone; forming the swarm again", "node_id", id, "now", why)
	c.swarm.manager, c.swarm.managerAddr, c.swarm.token = "", "", ""
	n.rec.SwarmRole = ""
	ch.node(n.rec)
	c.eachActive(func(j *jobEntry, a *store.Attempt) {
		if a.Swarm && a.NodeID == "" && a.Manager == id {
			c.loseAttempt(ch, j, a, fmt.Sprintf("the swarm manager %s %s before attempt %d started", id, why, a.Attempt), now)
		}
	})
}

// A machine can found the swarm as it boots (provider.CreateRequest.
// FoundSwarm): its bootstrap starts docker swarm init beside the download of
// its agent, so the swarm is up about when the agent registers, where an
// init asked of a registered node starts only then (a second or more on the
// way to the first join, in the DigitalOcean bench's traces). A create asks
// for one when the cluster has no swarm and nothing is under way to make
// one (mayFoundOnBoot). While that machine lives and its node has not failed
// to found the swarm, no other node is asked to: it would make a second
// swarm, and the founder's agent could join neither.

// swarmFounder returns the provider id of the live machine made to found
// the swarm as it boots, "" if there is none or its node failed to.
// Callers hold c.mu (then the fleet's lock; never the other way round).
func (c *Coordinator) swarmFounder() string {
	if c.machines == nil {
		return ""
	}
	for _, mc := range c.machines.fleet.Machines() {
		if mc.Founder && mc.Live() && !mc.Deleting && mc.ID != c.swarm.passedOver && !c.cannotFound(mc.ID) {
			return mc.ID
		}
	}
	return ""
}

// cannotFound reports whether the node of machine id registered without
// Docker or was removed. Callers hold c.mu.
func (c *Coordinator) cannotFound(id string) bool {
	for _, n := range c.nodes {
		if n.rec.ProviderID == id && (n.rec.Runtime != runtimeDocker || n.rec.Removed) {
			return true
		}
	}
	return false
}

// mayFoundOnBoot reports whether a create should make a machine that
// founds the swarm as it boots: there is no swarm, no node asked to found
// it, no Docker node that will be, and no founder machine alive. Creates
// are serialised (machines.scaleMu), so two never both make one.
func (c *Coordinator) mayFoundOnBoot() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.swarm.manager != "" || c.swarm.initNode != "" || c.swarmFounder() != "" {
		return false
	}
	for _, n := range c.nodes {
		if n.rec.Runtime == runtimeDocker && !n.rec.Removed {
			return false
		}
	}
	return true
}

// formSwarm asks connected Docker nodes outside the swarm to found or join
// it, once per session. Callers hold c.mu.
func (c *Coordinator) formSwarm() {
	if c.swarm.asked == nil {
		c.swarm.asked = map[string]bool{}
	}
	if c.swarm.manager == "" {
		for _, n := range c.nodes {
			if n.rec.SwarmRole == roleManager && !n.rec.Removed {
				c.swarm.manager = n.rec.ID // known from before a restart; its token comes with its next report
			}
		}
	}
	founder := ""
	if c.swarm.manager == "" && c.swarm.initNode == "" {
		founder = c.swarmFounder()
	}
	for _, n := range c.byID {
		id := n.rec.ID
		if n.rec.Runtime != runtimeDocker || !n.session.Connected() || n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY ||
			n.rec.SwarmNodeID != "" || c.swarm.asked[id] {
			continue
		}
		switch {
		case c.swarm.manager == "" && c.swarm.initNode == "":
			if founder != "" && n.rec.ProviderID != founder {
				continue // the machine founding the swarm as it boots is asked, once it registers
			}
			c.swarm.initNode, c.swarm.asked[id] = id, true
			c.log.Info("asking node to found the swarm", "node_id", id)
			c.send(id, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_SwarmInit{SwarmInit: &cloudmlv1.SwarmInit{
				AdvertiseAddr: n.rec.Address, PeerCidrs: c.cfg.SwarmPeerCIDRs,
			}}})
		case c.swarm.token != "" && c.swarm.managerAddr != "":
			c.swarm.asked[id] = true
			c.log.Info("asking node to join the swarm", "node_id", id, "manager", c.swarm.managerAddr)
			c.send(id, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_SwarmJoin{SwarmJoin: &cloudmlv1.SwarmJoin{
				ManagerAddrs: []string{c.swarm.managerAddr}, JoinToken: c.swarm.token,
				AdvertiseAddr: n.rec.Address, PeerCidrs: c.cfg.SwarmPeerCIDRs,
			}}})
		}
	}
}

// swarmSessionOpened forgets that a node was asked, so a new session asks
// again (its agent may have restarted), then forms the swarm. Callers hold c.mu.
func (c *Coordinator) swarmSessionOpened(id string) {
	delete(c.swarm.asked, id)
	c.formSwarm()
}

// swarmManager returns the manager node if it can take commands, or why not.
// Callers hold c.mu.
func (c *Coordinator) swarmManager() (*nodeEntry, string) {
	docker := 0
	for _, n := range c.nodes {
		if n.rec.Runtime == runtimeDocker {
			docker++
		}
	}
	m := c.nodes[c.swarm.manager]
	switch {
	case docker == 0:
		return nil, "no node runs Docker: start agents with --docker, or use --provider netns"
	case m == nil:
		return nil, "waiting for the swarm to be initialised"
	case !m.session.Connected() || m.rec.State != cloudmlv1.NodeState_NODE_STATE_READY:
		return nil, fmt.Sprintf("the swarm manager %s is not connected", m.rec.ID)
	case !c.swarm.reported[m.rec.ID] || c.swarm.token == "":
		return nil, fmt.Sprintf("waiting for the swarm manager %s to report its swarm", m.rec.ID)
	}
	return m, ""
}
