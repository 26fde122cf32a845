package coordinator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/store"
)

// Machines. The coordinator's record of what it asked its provider for is
// a provider.Fleet whose book is the store (storeBook), so a request is
// durable before its create and a delete before it is asked for. This
// file keeps the fleet's policies: linking machines to the nodes their
// agents registered as, deleting machines whose agent never registers
// (RegisterDeadline) and machines idle for their pool's idle time, marking
// the nodes of machines that vanished down (their attempts rescheduled),
// and removing the nodes of machines it deletes. One loop (run) does it
// every MachineCheckInterval, and reconciles with the provider every
// ReconcileInterval (more often while a machine is being created, so that
// progress shows). A registration links its machine at once (linkSoon):
// `cluster up` waits for that link, and a check may be seconds away.
// machines_rpc.go serves it to admins.

// createTimeout bounds a create the coordinator makes for a client; it
// does not end with the client's call, which may go away meanwhile.
const createTimeout = 10 * time.Minute

// maxRefusals bounds the registration refusals kept for the deadline's
// report.
const maxRefusals = 1000

// machines is the coordinator's fleet and its policies.
type machines struct {
	c     *Coordinator
	fleet *provider.Fleet
	log   hclog.Logger
	kick  chan struct{}
	// linkKick asks the loop to link machines, and only that: a node
	// registered.
	linkKick chan struct{}
	// linkMu serialises link, which the loop, the RPCs and deletes call:
	// two at once could link one machine to two nodes in turn.
	linkMu sync.Mutex

	// scaleMu serialises scales and deletes, so that two at once do not
	// both create the machines a pool lacks.
	scaleMu sync.Mutex

	mu            sync.Mutex             // protects the fields below
	started       bool                   // the provider was started
	pools         map[string]*store.Pool // by name
	busy          map[string]time.Time   // machine id → when its node last ran a task, or was first seen
	refusals      map[string]string      // provider id, or "label " + token label → the last registration refusal
	lastReconcile time.Time

	// view counts the changes of what a listing shows (the fleet's
	// machines, their nodes, refusals; not running tasks), and viewCh is
	// closed at the next one: a listing's blocking query waits on it.
	viewMu sync.Mutex
	view   uint64
	viewCh chan struct{}
}

// newMachines opens the fleet on the store.
func newMachines(c *Coordinator) (*machines, error) {
	log := c.log.Named("fleet")
	m := &machines{c: c, log: log, kick: make(chan struct{}, 1), linkKick: make(chan struct{}, 1),
		pools: map[string]*store.Pool{}, busy: map[string]time.Time{}, refusals: map[string]string{},
		view: 1, viewCh: make(chan struct{})}
	fleet, err := provider.OpenFleet(provider.FleetConfig{
		Provider: c.cfg.Provider, Book: storeBook{c.store}, Logger: log, KeepStrays: c.cfg.KeepStrays,
		Changed: m.changed,
	})
	if err != nil {
		return nil, err
	}
	m.fleet = fleet
	rec, err := c.store.LoadFleet()
	if err != nil {
		return nil, err
	}
	for _, p := range rec.Pools {
		m.pools[p.Name] = p
	}
	return m, nil
}

// start reconciles the book with what the provider has, now that it
// started: the nodes of requests a dead coordinator left are adopted,
// machines that vanished are marked lost and their nodes down, strays are
// deleted (or reported), and deletes left unfinished are asked again.
func (m *machines) start(ctx context.Context) error {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	if err := m.reconcile(ctx); err != nil {
		return err
	}
	if _, err := m.fleet.RetryDeletes(ctx); err != nil {
		m.log.Warn("deletes left by the last run failed; will retry", "error", err)
	}
	return nil
}

// ensure creates machines in the default pool until it holds n (the
// coordinator's --nodes), recording the pool if it has no record.
func (m *machines) ensure(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	m.scaleMu.Lock()
	defer m.scaleMu.Unlock()
	if _, err := m.fleet.Ensure(ctx, provider.CreateRequest{Pool: provider.DefaultPool, FoundSwarm: m.c.mayFoundOnBoot()}, n); err != nil {
		return err
	}
	m.mu.Lock()
	_, known := m.pools[provider.DefaultPool]
	m.mu.Unlock()
	if known {
		return nil
	}
	return m.savePool(&store.Pool{Name: provider.DefaultPool, Nodes: n, UpdateTime: time.Now()})
}

// isStarted reports whether the provider was started.
func (m *machines) isStarted() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.started
}

// changed counts a change of what a listing shows and answers the
// blocking queries waiting for one.
func (m *machines) changed() {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	m.view++
	close(m.viewCh)
	m.viewCh = make(chan struct{})
}

// viewIndex is the listing's change count and a channel closed at the
// next change.
func (m *machines) viewIndex() (uint64, <-chan struct{}) {
	m.viewMu.Lock()
	defer m.viewMu.Unlock()
	return m.view, m.viewCh
}

// poke makes the loop check at once.
func (m *machines) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// linkSoon makes the loop link machines to their nodes at once, without
// the rest of a check: a node registered.
func (m *machines) linkSoon() {
	select {
	case m.linkKick <- struct{}{}:
	default:
	}
}

// run checks the machines every MachineCheckInterval (or
// ReconcileInterval, if shorter), and links them when linkSoon asks,
// until ctx ends.
func (m *machines) run(ctx context.Context) {
	t := time.NewTicker(min(m.c.cfg.MachineCheckInterval, m.c.cfg.ReconcileInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.linkKick:
			m.link()
			continue
		case <-t.C:
		case <-m.kick:
		}
		m.check(ctx, time.Now())
	}
}

// check runs the policies once: link machines to nodes, retry deletes,
// delete machines past their registration deadline or idle too long, and
// reconcile when it is due.
func (m *machines) check(ctx context.Context, now time.Time) {
	m.link()
	if _, err := m.fleet.RetryDeletes(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("delete failed; will retry", "error", err)
	}
	m.enforceDeadline(now)
	m.deleteIdle(now)
	// A machine that was to found the swarm and is gone lets another
	// node found it. Asking changes nothing durable: no commit to wait for.
	m.c.lockedSeq(func() error { m.c.formSwarm(); return nil })
	m.mu.Lock()
	due := now.Sub(m.lastReconcile) >= m.c.cfg.ReconcileInterval
	m.mu.Unlock()
	if due || m.creating() {
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("reconcile failed", "error", err)
		}
	}
}

// creating reports whether a live machine is still being created.
func (m *machines) creating() bool {
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && !mc.Deleting && mc.NodeID == "" && mc.State == provider.StateCreating {
			return true
		}
	}
	return false
}

// reconcile reconciles the fleet and marks the nodes of lost machines
// down.
func (m *machines) reconcile(ctx context.Context) error {
	m.link()
	r, err := m.fleet.Reconcile(ctx)
	m.mu.Lock()
	m.lastReconcile = time.Now()
	m.mu.Unlock()
	m.afterReconcile(r)
	if err != nil {
		return fmt.Errorf("%s provider: %w", m.c.cfg.Provider.Name(), err)
	}
	return nil
}

// link records, for each live machine not yet linked, the node its agent
// registered as: the node that reported the machine's provider id, else
// the latest whose join token's label names the machine (a provider's
// label ends with the node's name or id: "local node-1").
func (m *machines) link() {
	m.linkMu.Lock()
	defer m.linkMu.Unlock()
	var todo []provider.Machine
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && mc.NodeID == "" {
			todo = append(todo, mc)
		}
	}
	if len(todo) == 0 {
		return
	}
	links := m.c.nodesOfMachines(todo, m.linked())
	if len(links) == 0 {
		return
	}
	if err := m.fleet.Link(links); err != nil {
		m.log.Error("record the nodes of machines failed", "error", err)
		return
	}
	for id, node := range links {
		m.log.Info("machine's agent registered", "machine", id, "node_id", node)
	}
}

// linked returns the nodes live machines are linked to.
func (m *machines) linked() map[string]bool {
	out := map[string]bool{}
	for _, mc := range m.fleet.Machines() {
		if mc.Live() && mc.NodeID != "" {
			out[mc.NodeID] = true
		}
	}
	return out
}

// nodesOfMachines finds the registered node of each machine it can.
func (c *Coordinator) nodesOfMachines(ms []provider.Machine, taken map[string]bool) map[string]string {
	c.mu.Lock()
	nodes := make([]store.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		if !n.rec.Removed {
			nodes = append(nodes, *n.rec)
		}
	}
	c.mu.Unlock()
	// Latest registration first: a machine whose agent registered again
	// is the newer node.
	slices.SortFunc(nodes, func(a, b store.Node) int { return b.RegisterTime.Compare(a.RegisterTime) })
	labels := map[string]string{} // node id → its token's label
	c.trust.mu.RLock()
	for _, n := range nodes {
		if t := c.trust.tokens[n.Token]; t != nil {
			labels[n.ID] = t.Label
		}
	}
	c.trust.mu.RUnlock()
	out := map[string]string{}
	for _, mc := range ms {
		for _, n := range nodes {
			if taken[n.ID] {
				continue
			}
			byID := n.ProviderID != "" && n.ProviderID == mc.ID
			byLabel := n.ProviderID == "" && labelNames(labels[n.ID], mc.Node)
			if byID || byLabel {
				out[mc.ID] = n.ID
				taken[n.ID] = true
				break
			}
		}
	}
	return out
}

// labelNames reports whether a provider's join token label names node: its
// last word is the node's name or id.
func labelNames(label string, node provider.Node) bool {
	f := strings.Fields(label)
	if len(f) == 0 {
		return false
	}
	last := f[len(f)-1]
	return last == node.ID || (node.Name != "" && last == node.Name)
}

// enforceDeadline deletes the machines whose agent did not register
// within RegisterDeadline of their booking, with the reason it could not,
// when a refused registration said.
func (m *machines) enforceDeadline(now time.Time) {
	deadline := m.c.cfg.RegisterDeadline
	for _, mc := range m.fleet.Machines() {
		if !mc.Live() || mc.Deleting || mc.NodeID != "" || now.Sub(mc.Booked) < deadline {
			continue
		}
		why := fmt.Sprintf("its agent did not register within %s of its creation: %s", deadline, m.refusal(mc.Node))
		m.log.Warn("deleting a machine whose agent never registered", "machine", mc.ID, "name", mc.Name, "reason", why)
		if _, err := m.deleteMachines([]string{mc.ID}, provider.CauseDeadline, why); err != nil {
			m.log.Error("mark a machine for deletion failed", "machine", mc.ID, "error", err)
		}
	}
}

// refusal is why the machine's agent could not register, as far as the
// coordinator knows.
func (m *machines) refusal(n provider.Node) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range []string{n.ID, "label " + n.Name, "label " + n.ID} {
		if why, ok := m.refusals[k]; ok {
			return "its last registration was refused: " + why
		}
	}
	return fmt.Sprintf("no registration from it reached the coordinator (can it reach %s? it dials the --advertise address)", m.c.advertised())
}

// advertised is the address nodes elsewhere dial.
func (c *Coordinator) advertised() string {
	if c.cfg.AdvertiseAddr != "" {
		return c.cfg.AdvertiseAddr
	}
	return dialAddr(c.Addr())
}

// noteRefusal keeps why a registration was refused, by the provider id the
// agent reported and by the label of its join token, for the deadline's
// report.
func (m *machines) noteRefusal(providerID, tokenLabel string, err error) {
	if providerID == "" && tokenLabel == "" {
		return
	}
	defer m.changed() // after the unlock below
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.refusals) >= maxRefusals {
		clear(m.refusals)
	}
	if providerID != "" {
		m.refusals[providerID] = err.Error()
	}
	if f := strings.Fields(tokenLabel); len(f) > 0 {
		m.refusals["label "+f[len(f)-1]] = err.Error()
	}
}

// deleteIdle deletes machines whose node ran no task for their pool's idle
// time, longest idle first, down to the pool's minimum. The swarm's
// manager goes last: deleting it ends the swarm.
func (m *machines) deleteIdle(now time.Time) {
	running, manager := m.c.nodeActivity()
	all := m.fleet.Machines()
	m.mu.Lock()
	idle := map[string][]provider.Machine{} // pool → machines past its idle time
	seen := map[string]bool{}
	for _, mc := range all {
		if !mc.Live() || mc.Deleting || mc.NodeID == "" {
			continue
		}
		seen[mc.ID] = true
		last, ok := m.busy[mc.ID]
		if !ok || running[mc.NodeID] > 0 {
			m.busy[mc.ID], last = now, now
		}
		after := m.idleTime(mc.Pool)
		if after > 0 && now.Sub(last) >= after && (mc.NodeID != manager || m.fleet.Count("") == 1) {
			idle[mc.Pool] = append(idle[mc.Pool], mc)
		}
	}
	for id := range m.busy {
		if !seen[id] {
			delete(m.busy, id)
		}
	}
	type victim struct {
		ids  []string
		pool string
	}
	var victims []victim
	for pool, ms := range idle {
		slices.SortFunc(ms, func(a, b provider.Machine) int { return m.busy[a.ID].Compare(m.busy[b.ID]) })
		minNodes := 0
		if p := m.pools[pool]; p != nil {
			minNodes = p.MinNodes
		}
		n := min(len(ms), m.fleet.Count(pool)-minNodes)
		if n <= 0 {
			continue
		}
		v := victim{pool: pool}
		for _, mc := range ms[:n] {
			v.ids = append(v.ids, mc.ID)
		}
		victims = append(victims, v)
	}
	m.mu.Unlock()
	for _, v := range victims {
		why := fmt.Sprintf("it ran no task for %s (pool %s keeps %d)", m.idleTimeLocked(v.pool), v.pool, m.minNodes(v.pool))
		m.log.Info("deleting idle machines", "pool", v.pool, "machines", v.ids, "reason", why)
		if _, err := m.deleteMachines(v.ids, provider.CauseIdle, why); err != nil {
			m.log.Error("mark idle machines for deletion failed", "error", err)
		}
	}
}

// idleTime is how long a machine of pool may be idle; 0 means forever.
// m.mu is held.
func (m *machines) idleTime(pool string) time.Duration {
	if p := m.pools[pool]; p != nil && p.IdleDelete != 0 {
		return max(p.IdleDelete, 0)
	}
	return m.c.cfg.IdleDelete
}

func (m *machines) idleTimeLocked(pool string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.idleTime(pool)
}

func (m *machines) minNodes(pool string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[pool]; p != nil {
		return p.MinNodes
	}
	return 0
}

// nodeActivity returns how many attempts each node runs, and the swarm's
// manager node.
func (c *Coordinator) nodeActivity() (running map[string]int32, manager string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, running = c.usedSlots()
	return running, c.swarm.manager
}

// deleteMachines marks the machines for deletion, with why, and removes
// their nodes (their attempts are rescheduled; a machine being deleted
// takes no more). The loop then deletes them. It returns the machines
// marked now.
func (m *machines) deleteMachines(ids []string, cause, why string) ([]provider.Machine, error) {
	m.link()
	marked, err := m.fleet.MarkDeleting(ids, cause, why)
	if err != nil {
		return nil, err
	}
	for _, mc := range marked {
		if mc.NodeID != "" {
			m.c.retireNode(mc.NodeID, fmt.Sprintf("its machine %s is being deleted: %s", mc.ID, why))
		}
	}
	m.poke()
	return marked, nil
}

// savePool records a pool.
func (m *machines) savePool(p *store.Pool) error {
	if err := m.c.store.Save(&store.Changes{Pools: []*store.Pool{p}}); err != nil {
		return err
	}
	m.mu.Lock()
	m.pools[p.Name] = p
	m.mu.Unlock()
	return nil
}

// poolList returns the pools, by name.
func (m *machines) poolList() []store.Pool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]store.Pool, 0, len(m.pools))
	for _, name := range slices.Sorted(maps.Keys(m.pools)) {
		out = append(out, *m.pools[name])
	}
	return out
}

// pool returns a copy of a pool's record, or a new one.
func (m *machines) pool(name string) store.Pool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.pools[name]; p != nil {
		return *p
	}
	return store.Pool{Name: name}
}

// retireNode removes a node whose machine is being deleted: its
// certificates are refused, its session ends and its attempts are
// rescheduled, with why.
func (c *Coordinator) retireNode(id, why string) {
	if _, _, err := c.removeNodeFor(id, why); err != nil && !errors.Is(err, ErrNotFound) {
		c.log.Error("remove the node of a machine being deleted failed", "node_id", id, "error", err)
	}
}

// nodeLost marks a node whose machine vanished down, with why, and
// reschedules its attempts.
func (c *Coordinator) nodeLost(id, why string) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[id]
	if n == nil || n.rec.Removed {
		return
	}
	ch := newChanges()
	c.markDown(ch, n, now)
	n.rec.Message = why
	ch.node(n.rec)
	if err := c.commit(ch); err != nil {
		c.log.Error("store a lost node failed", "node_id", id, "error", err)
		return
	}
	c.log.Warn("node lost with its machine", "node_id", id, "reason", why)
	c.poke()
}

// storeBook is the fleet's book in the store.
type storeBook struct{ st *store.Store }

// Load reads the machines and requests.
func (b storeBook) Load() ([]provider.Request, []provider.Machine, error) {
	f, err := b.st.LoadFleet()
	if err != nil {
		return nil, nil, err
	}
	reqs := make([]provider.Request, len(f.Requests))
	for i, r := range f.Requests {
		reqs[i] = provider.Request{ID: r.ID, Pool: r.Pool, Size: r.Size, Count: r.Count, Slots: r.Slots, Time: r.Time}
	}
	ms := make([]provider.Machine, len(f.Machines))
	for i, r := range f.Machines {
		ms[i] = machineFromRecord(r)
	}
	return reqs, ms, nil
}

// Write saves c in one transaction.
func (b storeBook) Write(c provider.BookChange) error {
	sc := &store.Changes{DropMachines: c.DropMachines, DropMachineRequests: c.DropRequests}
	for _, r := range c.Requests {
		sc.MachineRequests = append(sc.MachineRequests, &store.MachineRequest{
			ID: r.ID, Pool: r.Pool, Size: r.Size, Count: r.Count, Slots: r.Slots, Time: r.Time})
	}
	for _, mc := range c.Machines {
		sc.Machines = append(sc.Machines, machineRecord(mc))
	}
	return b.st.Save(sc)
}

func machineRecord(m provider.Machine) *store.Machine {
	return &store.Machine{
		ID: m.ID, Name: m.Name, Pool: m.Pool, Size: m.Size, Request: m.Request,
		PrivateIP: addrString(m.PrivateIP), PublicIP: addrString(m.PublicIP), State: string(m.State),
		CreateTime: m.Created, BookTime: m.Booked, NodeID: m.NodeID, Founder: m.Founder,
		Deleting: m.Deleting, Cause: m.Cause, Reason: m.Reason, Lost: m.Lost, GoneTime: m.Gone,
	}
}

func machineFromRecord(r *store.Machine) provider.Machine {
	priv, _ := netip.ParseAddr(r.PrivateIP)
	pub, _ := netip.ParseAddr(r.PublicIP)
	return provider.Machine{
		Node: provider.Node{ID: r.ID, Name: r.Name, Pool: r.Pool, Size: r.Size, Request: r.Request,
			PrivateIP: priv, PublicIP: pub, State: provider.State(r.State), Created: r.CreateTime, Founder: r.Founder},
		Booked: r.BookTime, NodeID: r.NodeID,
		Deleting: r.Deleting, Cause: r.Cause, Reason: r.Reason, Lost: r.Lost, Gone: r.GoneTime,
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// sortMachines orders machines by pool, then id.
func sortMachines(ms []provider.Machine) {
	slices.SortFunc(ms, func(a, b provider.Machine) int { return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.ID, b.ID)) })
}
