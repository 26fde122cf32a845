package coordinator

import (
	"context"
	"sort"

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
	return &cloudmlv1.GetClusterInfoResponse{DefaultBucket: cfg.DefaultBucket, Provider: cfg.Provider, Version: cfg.Version}, nil
}

// ListNodes returns every known node, sorted by id.
func (s *clusterServer) ListNodes(ctx context.Context, _ *cloudmlv1.ListNodesRequest) (*cloudmlv1.ListNodesResponse, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_, running := c.usedSlots()
	resp := &cloudmlv1.ListNodesResponse{}
	for _, n := range c.nodes {
		resp.Nodes = append(resp.Nodes, nodeProto(n, running[n.rec.ID]))
	}
	sort.Slice(resp.Nodes, func(a, b int) bool { return resp.Nodes[a].Id < resp.Nodes[b].Id })
	return resp, nil
}
