package coordinator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The machine RPCs of ClusterService (admin only; see auth.go). Their
// semantics, and why progress is polled, are in client.proto.

// priceTimeout bounds one price lookup of a listing or a scale.
const priceTimeout = 10 * time.Second

// ScalePool sets how many machines a pool has.
func (s *clusterServer) ScalePool(ctx context.Context, req *cloudmlv1.ScalePoolRequest) (*cloudmlv1.ScalePoolResponse, error) {
	resp, err := s.c.machines.scale(ctx, req)
	return resp, toStatus(err)
}

// ListMachines lists the machines with their nodes.
func (s *clusterServer) ListMachines(ctx context.Context, req *cloudmlv1.ListMachinesRequest) (*cloudmlv1.ListMachinesResponse, error) {
	return s.c.machines.list(ctx, req.GetIncludeGone(), req.GetWaitIndex(), req.GetWaitMax().AsDuration()), nil
}

// maxListWait bounds a listing's blocking query.
const maxListWait = 30 * time.Second

// DeleteMachines marks machines for deletion.
func (s *clusterServer) DeleteMachines(ctx context.Context, req *cloudmlv1.DeleteMachinesRequest) (*cloudmlv1.DeleteMachinesResponse, error) {
	resp, err := s.c.machines.delete(ctx, req)
	return resp, toStatus(err)
}

// CollectGarbage deletes what the provider has and the record does not.
func (s *clusterServer) CollectGarbage(ctx context.Context, req *cloudmlv1.CollectGarbageRequest) (*cloudmlv1.CollectGarbageResponse, error) {
	resp, err := s.c.machines.collect(ctx, req.GetDryRun())
	return resp, toStatus(err)
}

// needStarted is ErrNotStarted until the provider started.
func (m *machines) needStarted() error {
	if !m.isStarted() {
		return fmt.Errorf("%w: the %s provider is not started yet; retry", provider.ErrNotStarted, m.c.cfg.Provider.Name())
	}
	return nil
}

func (m *machines) scale(ctx context.Context, req *cloudmlv1.ScalePoolRequest) (*cloudmlv1.ScalePoolResponse, error) {
	name := cmp.Or(req.GetPool(), provider.DefaultPool)
	check := provider.CreateRequest{Request: "check", Count: 1, Pool: name}
	if err := check.Validate(); err != nil {
		return nil, err
	}
	switch {
	case req.GetNodes() < 0:
		return nil, errorf(ErrInvalid, "nodes must not be negative, got %d", req.GetNodes())
	case req.GetMaxHourlyCost() < 0:
		return nil, errorf(ErrInvalid, "the hourly cost limit must not be negative, got %g", req.GetMaxHourlyCost())
	case req.MinNodes != nil && req.GetMinNodes() < 0:
		return nil, errorf(ErrInvalid, "min nodes must not be negative, got %d", req.GetMinNodes())
	case req.GetIdleDelete() != nil && req.GetIdleDelete().AsDuration() < 0:
		return nil, errorf(ErrInvalid, "idle delete must not be negative, got %s", req.GetIdleDelete().AsDuration())
	}
	if err := m.needStarted(); err != nil {
		return nil, err
	}
	m.scaleMu.Lock()
	defer m.scaleMu.Unlock()
	p := m.pool(name)
	have := m.fleet.Count(name)
	nodes := int(req.GetNodes())
	if req.GetSize() != "" && p.Size != "" && req.GetSize() != p.Size && have > 0 {
		return nil, errorf(ErrPrecondition, "pool %s has %d machines of size %s: scale it to 0 before changing its size, or make another pool (--pool)", name, have, p.Size)
	}
	size := cmp.Or(req.GetSize(), p.Size)
	region, err := m.region(req.GetRegion())
	if err != nil {
		return nil, err
	}
	create, del := max(nodes-have, 0), max(have-nodes, 0)
	victims := m.victims(name, del)

	price, known := m.prices(ctx, []string{size})
	total, allKnown := m.cost(ctx, victims)
	total += float64(create) * price[size].Hourly
	known = known && allKnown
	if limit := req.GetMaxHourlyCost(); limit > 0 {
		if !known {
			return nil, errorf(ErrPrecondition, "the %s provider knows no prices: the cost limit %s/h cannot be checked", m.c.cfg.Provider.Name(), dollars(limit))
		}
		if total > limit+1e-9 {
			return nil, errorf(ErrPrecondition, "after this scale the cluster would cost %s/h, over the limit of %s/h", dollars(total), dollars(limit))
		}
	}

	p.Size, p.Region, p.Nodes = size, region, nodes
	if req.MinNodes != nil {
		p.MinNodes = int(req.GetMinNodes())
	}
	if d := req.GetIdleDelete(); d != nil {
		p.IdleDelete = d.AsDuration()
		if p.IdleDelete == 0 {
			p.IdleDelete = -1 // off for this pool, whatever the default
		}
	}
	resp := &cloudmlv1.ScalePoolResponse{}
	if req.GetDryRun() {
		plan, err := m.plan(ctx, p, create, del)
		if err != nil {
			return nil, err
		}
		plan.PriceKnown = known
		if known {
			plan.HourlyCost, plan.MonthlyCost, plan.ClusterHourlyCost = price[size].Hourly, price[size].Monthly, total
		}
		resp.Pool, resp.Plan = m.poolInfo(p), plan
		return resp, nil
	}

	if create > 0 {
		// The create outlives the call: a client that goes away must not
		// cut it short between the provider's answer and the record.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
		made, err := m.fleet.Create(cctx, provider.CreateRequest{Count: create, Pool: name, Size: size, FoundSwarm: m.c.mayFoundOnBoot()})
		cancel()
		if err != nil && len(made) == 0 {
			return nil, err
		}
		if err != nil {
			resp.Error = err.Error()
			m.log.Warn("create made fewer machines than asked", "pool", name, "asked", create, "made", len(made), "error", err)
		}
		var ms []provider.Machine
		for _, n := range made {
			if mc, ok := m.fleet.Machine(n.ID); ok {
				ms = append(ms, mc)
			}
		}
		resp.Created = m.render(ctx, ms)
	}
	p.UpdateTime = time.Now()
	if err := m.savePool(&p); err != nil {
		return nil, err
	}
	if del > 0 {
		marked, err := m.deleteMachines(victims, provider.CauseScale, fmt.Sprintf("pool %s scaled from %d to %d machines", name, have, nodes))
		if err != nil {
			return nil, err
		}
		resp.Deleting = m.render(ctx, marked)
	}
	m.log.Info("pool scaled", "pool", name, "nodes", nodes, "created", len(resp.Created), "deleting", len(resp.Deleting), "size", size, "region", region)
	m.poke()
	resp.Pool = m.poolInfo(p)
	return resp, nil
}

// region is the region of a scale: the provider's, which one asked for
// must name. A provider that is not a Regional has none.
func (m *machines) region(asked string) (string, error) {
	r, regional := m.c.cfg.Provider.(provider.Regional)
	switch {
	case !regional && asked != "":
		return "", errorf(ErrInvalid, "the %s provider has no regions; --region is for cloud providers", m.c.cfg.Provider.Name())
	case !regional:
		return "", nil
	case asked != "" && asked != r.Region():
		return "", errorf(ErrPrecondition, "the %s provider makes this cluster's machines in %s (set by coordinator serve, e.g. --do-region), not %s: one cluster is one region, its swarm runs over the private network",
			m.c.cfg.Provider.Name(), r.Region(), asked)
	}
	return r.Region(), nil
}

// providerRegion is the provider's region, "" if it has none.
func (m *machines) providerRegion() string {
	if r, ok := m.c.cfg.Provider.(provider.Regional); ok {
		return r.Region()
	}
	return ""
}

// victims picks n machines of pool to delete: those running no task
// first, then the newest; the swarm's manager last.
func (m *machines) victims(pool string, n int) []string {
	if n <= 0 {
		return nil
	}
	m.link()
	running, manager := m.c.nodeActivity()
	var ms []provider.Machine
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && !mc.Deleting && mc.Pool == pool {
			ms = append(ms, mc)
		}
	}
	isManager := func(mc provider.Machine) int {
		if mc.NodeID != "" && mc.NodeID == manager {
			return 1
		}
		return 0
	}
	slices.SortFunc(ms, func(a, b provider.Machine) int {
		return cmp.Or(cmp.Compare(isManager(a), isManager(b)), cmp.Compare(running[a.NodeID], running[b.NodeID]),
			b.Booked.Compare(a.Booked), cmp.Compare(a.ID, b.ID))
	})
	out := make([]string, 0, n)
	for _, mc := range ms[:min(n, len(ms))] {
		out = append(out, mc.ID)
	}
	return out
}

// prices looks up the price of each size; known is false when the
// provider knows no prices or a lookup failed.
func (m *machines) prices(ctx context.Context, sizes []string) (map[string]provider.Price, bool) {
	out := map[string]provider.Price{}
	pr, ok := m.c.cfg.Provider.(provider.Pricer)
	if !ok {
		return out, false
	}
	known := true
	for _, s := range sizes {
		if _, done := out[s]; done {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, priceTimeout)
		p, err := pr.Price(pctx, s)
		cancel()
		if err != nil {
			m.log.Warn("price lookup failed", "size", s, "error", err)
			known = false
			continue
		}
		out[s] = p
	}
	return out, known
}

// cost is what the live machines not being deleted, leaving out those in
// without, cost an hour.
func (m *machines) cost(ctx context.Context, without []string) (float64, bool) {
	var sizes []string
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && !mc.Deleting && !slices.Contains(without, mc.ID) {
			sizes = append(sizes, mc.Size)
		}
	}
	prices, known := m.prices(ctx, sizes)
	total := 0.0
	for _, s := range sizes {
		total += prices[s].Hourly
	}
	return total, known
}

// plan is a dry run's plan: what the provider would create, its
// user-data rendered with the token masked when it renders any.
func (m *machines) plan(ctx context.Context, p store.Pool, create, del int) (*cloudmlv1.ScalePlan, error) {
	plan := &cloudmlv1.ScalePlan{Provider: m.c.cfg.Provider.Name(), Create: int32(create), Delete: int32(del), Size: p.Size, Region: p.Region}
	dr, ok := m.c.cfg.Provider.(provider.DryRunner)
	if !ok || create == 0 {
		return plan, nil
	}
	d, err := dr.PlanCreate(ctx, provider.CreateRequest{Request: "dry-run", Count: create, Pool: p.Name, Size: p.Size, FoundSwarm: m.c.mayFoundOnBoot()})
	if err != nil {
		return nil, fmt.Errorf("%s provider: dry run: %w", m.c.cfg.Provider.Name(), err)
	}
	plan.Size, plan.Region, plan.Image = cmp.Or(d.Size, p.Size), cmp.Or(d.Region, p.Region), d.Image
	plan.UserData, plan.Notes = d.UserData, d.Notes
	return plan, nil
}

func (m *machines) poolInfo(p store.Pool) *cloudmlv1.PoolInfo {
	idle := p.IdleDelete
	if idle == 0 {
		idle = m.c.cfg.IdleDelete
	}
	return &cloudmlv1.PoolInfo{Name: p.Name, Size: p.Size, Region: p.Region, Nodes: int32(p.Nodes), MinNodes: int32(p.MinNodes),
		IdleDelete: durationpb.New(max(idle, 0))}
}

// list lists the machines; with waitIndex, once the listing changed since
// the answer that carried it, or after waitMax (a blocking query). An
// index this process did not give (one from before a restart) is answered
// at once.
func (m *machines) list(ctx context.Context, includeGone bool, waitIndex uint64, waitMax time.Duration) *cloudmlv1.ListMachinesResponse {
	index, next := m.viewIndex()
	if waitIndex == index && waitMax > 0 {
		t := time.NewTimer(min(waitMax, maxListWait))
		select {
		case <-next:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		index, _ = m.viewIndex()
	}
	var ms []provider.Machine
	for _, mc := range m.fleet.Machines() {
		// What ended unasked (lost, never registered) shows until it is
		// forgotten; what was deleted as asked only on request.
		if mc.Live() || includeGone || mc.Lost || mc.Cause == provider.CauseDeadline {
			ms = append(ms, mc)
		}
	}
	sortMachines(ms)
	resp := &cloudmlv1.ListMachinesResponse{Machines: m.render(ctx, ms), Provider: m.c.cfg.Provider.Name()}
	for _, p := range m.poolList() {
		resp.Pools = append(resp.Pools, m.poolInfo(p))
	}
	resp.HourlyCost, resp.PriceKnown = m.cost(ctx, nil)
	if !resp.PriceKnown {
		resp.HourlyCost = 0
	}
	resp.Index = index
	return resp
}

func (m *machines) delete(ctx context.Context, req *cloudmlv1.DeleteMachinesRequest) (*cloudmlv1.DeleteMachinesResponse, error) {
	if !req.GetAll() && req.GetPool() == "" && len(req.GetIds()) == 0 {
		return nil, errorf(ErrInvalid, "name the machines to delete, a pool, or all")
	}
	if err := m.needStarted(); err != nil {
		return nil, err
	}
	m.scaleMu.Lock()
	defer m.scaleMu.Unlock()
	var ids []string
	cause, why := provider.CauseScale, "deleted by an admin"
	switch {
	case req.GetAll():
		cause, why = provider.CauseDown, "cluster down"
	case req.GetPool() != "":
		cause, why = provider.CauseDown, "pool "+req.GetPool()+" down"
	}
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && (req.GetAll() || mc.Pool == req.GetPool()) {
			ids = append(ids, mc.ID)
		}
	}
	for _, id := range req.GetIds() {
		mc, ok := m.fleet.Machine(id)
		if !ok || !mc.Live() {
			return nil, errorf(ErrNotFound, "machine %q not found (see 'cloudml-client cluster machines')", id)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if _, err := m.deleteMachines(ids, cause, why); err != nil {
		return nil, err
	}
	var deleting []provider.Machine
	pools := map[string]bool{}
	for _, id := range ids {
		if mc, ok := m.fleet.Machine(id); ok {
			deleting = append(deleting, mc)
			pools[mc.Pool] = true
		}
	}
	if req.GetAll() {
		for _, p := range m.poolList() {
			pools[p.Name] = true
		}
	} else if req.GetPool() != "" {
		pools[req.GetPool()] = true
	}
	for name := range pools {
		p := m.pool(name)
		if p.Nodes != m.fleet.Count(name) {
			p.Nodes, p.UpdateTime = m.fleet.Count(name), time.Now()
			if err := m.savePool(&p); err != nil {
				return nil, err
			}
		}
	}
	m.log.Info("machines marked for deletion", "machines", ids, "reason", why)
	sortMachines(deleting)
	return &cloudmlv1.DeleteMachinesResponse{Deleting: m.render(ctx, deleting)}, nil
}

func (m *machines) collect(ctx context.Context, dryRun bool) (*cloudmlv1.CollectGarbageResponse, error) {
	if err := m.needStarted(); err != nil {
		return nil, err
	}
	resp := &cloudmlv1.CollectGarbageResponse{}
	if dryRun {
		strays, err := m.fleet.Strays(ctx)
		if err != nil {
			return nil, err
		}
		resp.Strays = m.renderNodes(ctx, strays)
		return resp, nil
	}
	// Deletes are confirmed before the answer; a client that goes away
	// must not leave them half done.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
	defer cancel()
	r, err := m.fleet.CollectGarbage(gctx)
	m.afterReconcile(r)
	resp.Strays, resp.Deleted = m.renderNodes(ctx, r.Strays), r.Deleted
	if err != nil {
		return resp, fmt.Errorf("%s provider: %w", m.c.cfg.Provider.Name(), err)
	}
	m.log.Info("garbage collected", "strays", len(r.Strays), "deleted", r.Deleted)
	return resp, nil
}

// renderNodes renders nodes the record does not hold (strays).
func (m *machines) renderNodes(ctx context.Context, nodes []provider.Node) []*cloudmlv1.Machine {
	ms := make([]provider.Machine, len(nodes))
	for i, n := range nodes {
		ms[i] = provider.Machine{Node: n}
	}
	return m.render(ctx, ms)
}

// nodeView is what a machine listing shows of a node.
type nodeView struct {
	hostname, address, runtime, swarmNodeID, swarmRole, message string
	state                                                       cloudmlv1.NodeState
	running                                                     int32
}

// render renders machines with their nodes and prices.
func (m *machines) render(ctx context.Context, ms []provider.Machine) []*cloudmlv1.Machine {
	if len(ms) == 0 {
		return nil
	}
	views := map[string]nodeView{}
	c := m.c
	c.mu.Lock()
	_, running := c.usedSlots()
	for _, mc := range ms {
		if n := c.nodes[mc.NodeID]; n != nil {
			views[mc.NodeID] = nodeView{hostname: n.rec.Hostname, address: n.rec.Address, runtime: n.rec.Runtime, swarmNodeID: n.rec.SwarmNodeID,
				swarmRole: n.rec.SwarmRole, message: n.rec.Message, state: n.rec.State, running: running[mc.NodeID]}
		}
	}
	c.mu.Unlock()
	var sizes []string
	for _, mc := range ms {
		if mc.Live() {
			sizes = append(sizes, mc.Size)
		}
	}
	prices, _ := m.prices(ctx, sizes)
	out := make([]*cloudmlv1.Machine, len(ms))
	for i, mc := range ms {
		var nv *nodeView
		if v, ok := views[mc.NodeID]; ok {
			nv = &v
		}
		pm := m.machineProto(mc, nv)
		if p, ok := prices[mc.Size]; ok && mc.Live() {
			pm.HourlyCost = &p.Hourly
		}
		out[i] = pm
	}
	return out
}

// machineProto renders a machine; nv is its node, if linked.
func (m *machines) machineProto(mc provider.Machine, nv *nodeView) *cloudmlv1.Machine {
	pm := &cloudmlv1.Machine{
		Id: mc.ID, Name: mc.Name, Pool: mc.Pool, Size: mc.Size, Region: m.providerRegion(),
		PrivateIp: addrString(mc.PrivateIP), PublicIp: addrString(mc.PublicIP),
		NodeId: mc.NodeID, Request: mc.Request, CreateTime: timestamp(mc.Created), GoneTime: timestamp(mc.Gone),
	}
	if nv != nil {
		pm.Hostname, pm.NodeState, pm.SwarmRole, pm.RunningTasks = nv.hostname, nv.state, nv.swarmRole, nv.running
		// Until the provider's list gives the machine's address (at the
		// next reconcile), the one its verified agent registered with.
		pm.PrivateIp = cmp.Or(pm.PrivateIp, nv.address)
	}
	switch {
	case mc.Lost:
		pm.State, pm.Message = cloudmlv1.MachineState_MACHINE_STATE_LOST, mc.Reason
	case !mc.Live():
		pm.State, pm.Message = cloudmlv1.MachineState_MACHINE_STATE_GONE, mc.Reason
	case mc.Deleting || mc.State == provider.StateDeleting:
		pm.State, pm.Message = cloudmlv1.MachineState_MACHINE_STATE_DELETING, cmp.Or(mc.Reason, "by the provider")
	case nv != nil:
		pm.State, pm.Message = cloudmlv1.MachineState_MACHINE_STATE_REGISTERED, nv.message
		switch {
		case nv.state != cloudmlv1.NodeState_NODE_STATE_READY:
			pm.Message = cmp.Or(nv.message, "its node is "+nodeStateName(nv.state))
		case nv.runtime != runtimeDocker || nv.swarmNodeID != "":
			pm.State = cloudmlv1.MachineState_MACHINE_STATE_READY
		default:
			pm.Message = cmp.Or(nv.message, "joining the swarm")
		}
	case mc.State == provider.StateStopped:
		pm.State, pm.Message = cloudmlv1.MachineState_MACHINE_STATE_STOPPED, "powered off"
	default:
		pm.State = cloudmlv1.MachineState_MACHINE_STATE_CREATING
		if mc.State == provider.StateRunning {
			pm.State = cloudmlv1.MachineState_MACHINE_STATE_BOOTED
		}
		pm.Message = fmt.Sprintf("waiting for its agent to register (deadline %s)", m.c.cfg.RegisterDeadline)
		m.mu.Lock()
		why, refused := m.refusals[mc.ID]
		if !refused {
			why, refused = m.refusals["label "+mc.Name]
		}
		m.mu.Unlock()
		if refused {
			pm.Message += "; its last registration was refused: " + why
		}
	}
	return pm
}

// afterReconcile marks the nodes of machines a reconcile found lost down.
func (m *machines) afterReconcile(r provider.ReconcileReport) {
	m.link()
	for _, id := range r.Vanished {
		mc, _ := m.fleet.Machine(id)
		if mc.NodeID != "" {
			m.c.nodeLost(mc.NodeID, fmt.Sprintf("its machine %s vanished at the %s provider", id, m.c.cfg.Provider.Name()))
		}
	}
}

func nodeStateName(s cloudmlv1.NodeState) string {
	switch s {
	case cloudmlv1.NodeState_NODE_STATE_DOWN:
		return "down"
	case cloudmlv1.NodeState_NODE_STATE_REMOVED:
		return "removed"
	}
	return "ready"
}

// dollars renders a cost: "$0.0714".
func dollars(v float64) string { return fmt.Sprintf("$%.4f", v) }
