package digitalocean

import (
	"strconv"
	"testing"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/dofake"
)

// TestListPagesAndShowsGPUDroplets: List reads every page (200 a page) and
// also the cluster's GPU droplets, which the API lists only when asked
// (and not by tag), not another cluster's; nodes carry
// their pool, request, size, addresses and state.
func TestListPagesAndShowsGPUDroplets(t *testing.T) {
	h := start(t, func(c *dofake.Config) { c.DropletLimit = 300 }, func(c *Config) { c.Region = "tor1"; c.Parallel = 10 })
	if _, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "many", Count: 205}); err != nil {
		t.Fatal(err)
	}
	gpu, err := h.p.Create(t.Context(), provider.CreateRequest{Request: "gpu", Count: 1, Pool: "gpu", Size: "gpu-h100x1-80gb"})
	if err != nil {
		t.Fatal(err)
	}
	other := newProvider(t, func() Config { c := testConfig(h.s); c.Cluster, c.Region = "other", "tor1"; return c }())
	otherTarget, _ := target(t, nil)
	if err := other.Start(t.Context(), otherTarget); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Create(t.Context(), provider.CreateRequest{Request: "gpu", Count: 1, Size: "gpu-h100x1-80gb"}); err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.Atoi(gpu[0].ID)
	d := waitActive(t, h.s, id)
	before := h.s.Stats().Requests[dofake.EndpointDropletsList]
	nodes, err := h.p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := h.s.Stats().Requests[dofake.EndpointDropletsList] - before; got != 3 {
		t.Errorf("List made %d list requests, want 3 (2 pages, then the GPU droplets)", got)
	}
	if len(nodes) != 206 {
		t.Fatalf("List = %d nodes, want 206", len(nodes))
	}
	var g provider.Node
	for _, n := range nodes {
		if n.ID == gpu[0].ID {
			g = n
		}
	}
	if g.Pool != "gpu" || g.Request != "gpu" || g.Size != "gpu-h100x1-80gb" || g.State != provider.StateRunning ||
		g.PublicIP != d.PublicIPv4 || g.PrivateIP != d.PrivateIPv4 || g.Created.IsZero() || g.Name != d.Name {
		t.Errorf("GPU node %+v, want pool and request gpu, its size, running, addresses %v and %v", g, d.PublicIPv4, d.PrivateIPv4)
	}
}
