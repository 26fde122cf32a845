package netns

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/local"
)

// Start resolves the agent binary, sets the cluster up if Prepare (or
// Setup) did not, and binds the provider to the coordinator at t.Addr (a
// wildcard host becomes the bridge address; a loopback one is refused, see
// AgentAddr).
func (p *Provider) Start(ctx context.Context, t provider.Target) error {
	bin, err := local.ResolveAgent(p.cfg.AgentBinary)
	if err != nil {
		return err
	}
	if err := p.Setup(ctx); err != nil {
		return err
	}
	addr, err := p.AgentAddr(t.Addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return provider.ErrNotStarted
	case p.agents != nil:
		return errors.New("already started")
	}
	p.bin, p.addr, p.agents = bin, addr, local.NewAgents(t, p.cfg.Restart)
	p.log.Info("netns provider started", "namespaces", len(p.cluster.Nodes()), "coordinator", addr)
	return nil
}

// started returns the agents, or ErrNotStarted before Start.
func (p *Provider) started() (*local.Agents, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.agents == nil {
		return nil, provider.ErrNotStarted
	}
	return p.agents, nil
}

// Create starts req.Count agents, each in the first namespace that has
// none (node id "<namespace>-<k>" for the namespace's k-th node), with
// join tokens labelled "netns <namespace>" and capped at
// req.Slots (or Config.Slots); ErrCapacity when fewer namespaces are free.
// It knows one size, "" (a namespace). On error the nodes returned run; no
// other was made.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Size != "" {
		return nil, fmt.Errorf("%w: size %q: the netns provider has one size, \"\" (a namespace)", provider.ErrInvalid, req.Size)
	}
	agents, err := p.started()
	if err != nil {
		return nil, err
	}
	p.createMu.Lock()
	defer p.createMu.Unlock()
	c := p.Cluster()
	if p.ids == nil {
		p.ids, p.gens = make([]string, len(c.Nodes())), make([]int, len(c.Nodes()))
	}
	var free []int
	for idx, id := range p.ids {
		if id == "" || !agents.Has(id) {
			free = append(free, idx)
		}
	}
	if len(free) < req.Count {
		return nil, fmt.Errorf("%w: %d of %d namespaces are free, %d asked for (--nodes sets how many there are)",
			provider.ErrCapacity, len(free), len(c.Nodes()), req.Count)
	}
	slots := cmp.Or(req.Slots, p.cfg.Slots)
	p.mu.Lock()
	bin, addr := p.bin, p.addr
	p.mu.Unlock()
	var made []provider.Node
	for _, idx := range free[:req.Count] {
		if err := ctx.Err(); err != nil {
			return made, err
		}
		node, i := c.Nodes()[idx], idx+1
		p.gens[idx]++
		id := node.Name + "-" + strconv.Itoa(p.gens[idx])
		p.ids[idx] = id
		args := p.Args(i, addr, node, slots)
		ip, _ := netip.ParseAddr(node.Addr)
		n, err := agents.Start(local.Agent{
			Node:  provider.Node{ID: id, Name: node.Name, Pool: req.Pool, Request: req.Request, PrivateIP: ip},
			Label: "netns " + node.Name, Slots: slots, WorkDir: p.workDir(i),
			Command: func() *exec.Cmd { return c.Command(context.Background(), idx, bin, args...) },
			Env:     p.cfg.Env,
			Log:     p.log.Named("agent-"+strconv.Itoa(i)).With("namespace", node.Name, "address", node.Addr),
		})
		if err != nil {
			return made, fmt.Errorf("agent %d: %w", i, err)
		}
		made = append(made, n)
	}
	p.log.Info("netns agents started", "nodes", len(made), "coordinator", addr)
	return made, nil
}

// Delete stops the agent of each node (namespace) and removes its work
// dir; the namespace and its daemon stay, free for a later Create, whose
// agent registers as a new node. Unknown ids are gone already.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	agents, err := p.started()
	if err != nil {
		return err
	}
	return agents.Delete(ids)
}

// List returns the nodes (namespaces that run an agent), sorted by id.
func (p *Provider) List(ctx context.Context) ([]provider.Node, error) {
	agents, err := p.started()
	if err != nil {
		return nil, err
	}
	return agents.List(), nil
}

// Reconcile is provider.ReconcileByList: exited agents are restarted all
// along by their supervision.
func (p *Provider) Reconcile(ctx context.Context, req provider.ReconcileRequest) (provider.ReconcileReport, error) {
	return provider.ReconcileByList(ctx, p, req)
}
