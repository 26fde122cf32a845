package coordinator

import (
	"context"
	"fmt"
	"sort"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// clusterServer implements ClusterService.
type clusterServer struct {
	cloudmlv1.UnimplementedClusterServiceServer
	c *Coordinator
}

// GetClusterInfo describes the coordinator.
func (s *clusterServer) GetClusterInfo(ctx context.Context, _ *cloudmlv1.GetClusterInfoRequest) (*cloudmlv1.GetClusterInfoResponse, error) {
	cfg := s.c.cfg
	return &cloudmlv1.GetClusterInfoResponse{DefaultBucket: cfg.DefaultBucket, Provider: cfg.Provider.Name(), Version: cfg.Version,
		HeartbeatPort: s.c.pulsePort.Load()}, nil
}

// ListNodes returns every known node, sorted by id.
func (s *clusterServer) ListNodes(ctx context.Context, _ *cloudmlv1.ListNodesRequest) (*cloudmlv1.ListNodesResponse, error) {
	c := s.c
	resp := &cloudmlv1.ListNodesResponse{}
	err := c.locked(func() error {
		_, running := c.usedSlots()
		for _, n := range c.nodes {
			np := nodeProto(n, c.live.lastSeen(n.rec.ID), running[n.rec.ID])
			np.Connected = n.session.Connected()
			resp.Nodes = append(resp.Nodes, np)
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	sort.Slice(resp.Nodes, func(a, b int) bool { return resp.Nodes[a].Id < resp.Nodes[b].Id })
	return resp, nil
}

// RemoveNode removes a node: its certificates are refused from now on, its
// session ends, its attempts are rescheduled, and it stays out (a new
// registration is a new node, and needs a new join token).
func (s *clusterServer) RemoveNode(ctx context.Context, req *cloudmlv1.RemoveNodeRequest) (*cloudmlv1.RemoveNodeResponse, error) {
	n, lost, err := s.c.removeNode(req.GetNodeId(), callerFrom(ctx).Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &cloudmlv1.RemoveNodeResponse{Node: n, AttemptsRescheduled: lost}, nil
}

func (c *Coordinator) removeNode(id, by string) (*cloudmlv1.Node, int32, error) {
	return c.removeNodeFor(id, "removed by "+orNone(by))
}

// removeNodeFor removes a node, saying why in its message.
func (c *Coordinator) removeNodeFor(id, why string) (node *cloudmlv1.Node, lost int32, err error) {
	err = c.locked(func() error {
		node, lost, err = c.removeNodeLocked(id, why, time.Now())
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return node, lost, nil
}

// removeNodeLocked is removeNodeFor's work under c.mu.
func (c *Coordinator) removeNodeLocked(id, why string, now time.Time) (*cloudmlv1.Node, int32, error) {
	n := c.nodes[id]
	if n == nil {
		return nil, 0, errorf(ErrNotFound, "node %q not found (see 'cloudml-client cluster nodes')", id)
	}
	if n.rec.Removed {
		return nodeProto(n, c.live.lastSeen(id), 0), 0, nil
	}
	_, running := c.usedSlots()
	ch := newChanges()
	n.rec.Removed = true
	n.rec.State = cloudmlv1.NodeState_NODE_STATE_REMOVED
	n.rec.Message = why
	ch.node(n.rec)
	c.loseNodeAttempts(ch, n, fmt.Sprintf("node %s was removed", id), now)
	if err := c.commit(ch); err != nil {
		return nil, 0, err
	}
	c.trust.setNode(n.rec)
	c.disp.End(id, "node removed: "+why, now)
	if id == c.swarm.manager || id == c.swarm.initNode {
		// The swarm has one manager: without it, it is gone. The next
		// Docker node founds a new one instead of joining a manager that
		// no longer exists (cluster down, then up).
		c.log.Warn("the swarm's manager was removed: the next Docker node founds a new swarm", "node_id", id)
		c.swarm = swarmState{}
	}
	c.log.Warn("node removed", "node_id", id, "reason", why, "attempts_rescheduled", running[id])
	c.poke()
	return nodeProto(n, c.live.lastSeen(id), 0), running[id], nil
}
