package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Fleet is the coordinator's side of a Provider: the book of the machines
// it asked for (create requests, the nodes they made, the deletes under
// way) kept in step with the provider by Reconcile.
//
// With a durable Book (the coordinator's store) no node is ever lost track
// of, whatever the moment the coordinator dies:
//
//   - The request is written before Create is called (the intent), and the
//     nodes after; a request left in the book after a restart is an
//     orphan, and the first reconcile adopts the nodes that carry it
//     instead of taking them for strays.
//   - A delete is written before the provider is asked (the machine is
//     "deleting"), and the machine is gone only once the provider's Delete
//     returned nil for it; until then RetryDeletes asks again.
//   - Gone and lost machines stay in the book as tombstones, with why,
//     for History, so that listings can say what happened to them.
type Fleet struct {
	p          Provider
	log        hclog.Logger
	keepStrays bool
	book       Book
	history    time.Duration
	changed    func() // FleetConfig.Changed, never nil
	// booked counts the book writes, so a call tells Changed only when
	// one happened since it began (notify).
	booked atomic.Uint64

	// ops lets creates and deletes run together but not during a
	// reconcile, which would take a node that a create is making for a
	// stray, or a node being deleted for vanished.
	ops sync.RWMutex
	// deleting serialises RetryDeletes.
	deleting sync.Mutex

	mu       sync.Mutex          // protects machines, requests, underway
	machines map[string]*Machine // by provider id: live machines and tombstones
	requests map[string]Request  // create requests in the book, by id
	underway map[string]int      // request id → creates under way in this process
}

// Machine is a node in the fleet's book: what the provider said of it and
// what the fleet did with it.
type Machine struct {
	// Node is the node as created or last listed.
	Node
	// Booked is when the fleet first booked it.
	Booked time.Time
	// NodeID is the coordinator node its agent registered as, once the
	// coordinator linked it (Link).
	NodeID string
	// Deleting is set once a delete was asked for; the machine stays until
	// the provider confirms it gone.
	Deleting bool
	// Cause says who wanted it deleted (one of the Cause constants), and
	// Reason why, in words; for a lost machine, what was found.
	Cause  string
	Reason string
	// Lost is set when the provider stopped listing it without a delete.
	Lost bool
	// Gone is when it was confirmed gone (Delete returned nil) or found
	// lost; zero while it exists.
	Gone time.Time
}

// Live reports whether the machine exists as far as the book knows.
func (m *Machine) Live() bool { return m.Gone.IsZero() }

// Delete causes (Machine.Cause).
const (
	// CauseScale: a scale down or a delete asked for by name.
	CauseScale = "scale"
	// CauseDown: the whole cluster, or a pool, was brought down.
	CauseDown = "down"
	// CauseIdle: it ran no task for the pool's idle time.
	CauseIdle = "idle"
	// CauseDeadline: its agent did not register in time.
	CauseDeadline = "deadline"
	// CauseLost: it vanished at the provider.
	CauseLost = "lost"
)

// Request is a create request in the book, written before the provider is
// asked, dropped once its nodes are booked.
type Request struct {
	// ID is CreateRequest.Request.
	ID string
	// Pool, Size, Count and Slots are the request's.
	Pool, Size   string
	Count, Slots int
	// Time is when it was recorded.
	Time time.Time
}

// BookChange is one durable write of the book.
type BookChange struct {
	// Requests and Machines are written (replaced) by id.
	Requests []Request
	Machines []Machine
	// DropRequests and DropMachines are the ids of records to remove.
	DropRequests []string
	DropMachines []string
}

func (c BookChange) empty() bool {
	return len(c.Requests)+len(c.Machines)+len(c.DropRequests)+len(c.DropMachines) == 0
}

// Book keeps a Fleet's record durably. Write is one transaction: on error
// nothing of it was written.
type Book interface {
	// Load returns every request and machine written and not dropped.
	Load() ([]Request, []Machine, error)
	// Write applies c.
	Write(c BookChange) error
}

// MemoryBook is a Book in memory, for providers whose nodes end with the
// coordinator and for tests. The zero value is empty and ready.
type MemoryBook struct {
	mu       sync.Mutex // protects requests, machines, fail
	requests map[string]Request
	machines map[string]Machine
	fail     error
}

// Load returns the records.
func (b *MemoryBook) Load() ([]Request, []Machine, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	reqs := slices.SortedFunc(maps.Values(b.requests), func(a, b Request) int { return cmp.Compare(a.ID, b.ID) })
	ms := slices.SortedFunc(maps.Values(b.machines), func(a, b Machine) int { return cmp.Compare(a.ID, b.ID) })
	return reqs, ms, nil
}

// Write applies c, or fails with the error FailWrites set.
func (b *MemoryBook) Write(c BookChange) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fail != nil {
		return b.fail
	}
	if b.requests == nil {
		b.requests, b.machines = map[string]Request{}, map[string]Machine{}
	}
	for _, r := range c.Requests {
		b.requests[r.ID] = r
	}
	for _, m := range c.Machines {
		b.machines[m.ID] = m
	}
	for _, id := range c.DropRequests {
		delete(b.requests, id)
	}
	for _, id := range c.DropMachines {
		delete(b.machines, id)
	}
	return nil
}

// FailWrites makes every later Write fail with err (nil: succeed again),
// as a coordinator that died would write nothing more.
func (b *MemoryBook) FailWrites(err error) {
	b.mu.Lock()
	b.fail = err
	b.mu.Unlock()
}

// FleetConfig configures a Fleet.
type FleetConfig struct {
	// Provider is the provider the fleet drives; required.
	Provider Provider
	// Book keeps the record; nil means a MemoryBook.
	Book Book
	// Logger is the fleet's logger; nil means none.
	Logger hclog.Logger
	// KeepStrays makes Reconcile report strays without deleting them.
	KeepStrays bool
	// History is how long gone and lost machines stay in the book;
	// default 1h.
	History time.Duration
	// Changed, if set, is called after each call that may have changed
	// the machines the fleet shows, once the change is booked and shown
	// (a listing's blocking query waits for it).
	Changed func()
}

// write books ch and, unless it is empty, counts it for notify.
func (f *Fleet) write(ch BookChange) error {
	if !ch.empty() {
		f.booked.Add(1)
	}
	return f.book.Write(ch)
}

// notify calls FleetConfig.Changed if the book was written since the
// call that defers it began (before, from booked): deferred by every call
// that writes, so it runs once that call's change is booked and applied.
// A write of another call under way may make it tell early; that call
// tells again when it ends.
func (f *Fleet) notify(before uint64) {
	if f.booked.Load() != before {
		f.changed()
	}
}

// DefaultHistory is FleetConfig.History's default.
const DefaultHistory = time.Hour

// OpenFleet loads the book and returns the fleet over it. Requests found
// in the book are orphans of a coordinator that stopped while they were
// under way: the next Reconcile adopts their nodes.
func OpenFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Provider == nil {
		return nil, errors.New("fleet: a provider is required")
	}
	if cfg.Book == nil {
		cfg.Book = &MemoryBook{}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	reqs, machines, err := cfg.Book.Load()
	if err != nil {
		return nil, fmt.Errorf("fleet: load the book: %w", err)
	}
	f := &Fleet{
		p: cfg.Provider, log: cfg.Logger, keepStrays: cfg.KeepStrays, book: cfg.Book, history: cfg.History, changed: cfg.Changed,
		machines: map[string]*Machine{}, requests: map[string]Request{}, underway: map[string]int{},
	}
	for _, r := range reqs {
		f.requests[r.ID] = r
	}
	for _, m := range machines {
		f.machines[m.ID] = &m
	}
	if len(reqs) > 0 {
		f.log.Info("create requests left under way by the last run; their nodes will be adopted", "requests", len(reqs))
	}
	return f, nil
}

// NewFleet returns a fleet over p with its book in memory. keepStrays
// makes Reconcile report strays without deleting them.
func NewFleet(p Provider, log hclog.Logger, keepStrays bool) *Fleet {
	f, err := OpenFleet(FleetConfig{Provider: p, Logger: log, KeepStrays: keepStrays})
	if err != nil {
		panic(err) // an empty MemoryBook loads without error
	}
	return f
}

// Provider returns the provider the fleet drives.
func (f *Fleet) Provider() Provider { return f.p }

// Nodes returns the live machines' nodes, sorted by id, as last created or
// listed.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Node
	for _, m := range f.machines {
		if m.Live() {
			out = append(out, m.Node)
		}
	}
	return sortedNodes(out)
}

// Machines returns every machine in the book, live ones and tombstones,
// sorted by id.
func (f *Fleet) Machines() []Machine {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Machine, 0, len(f.machines))
	for _, m := range f.machines {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Machine) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Machine returns the machine with provider id id.
func (f *Fleet) Machine(id string) (Machine, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.machines[id]
	if !ok {
		return Machine{}, false
	}
	return *m, true
}

// Requests returns the create requests in the book (under way, or
// orphans of an earlier run), sorted by id.
func (f *Fleet) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.SortedFunc(maps.Values(f.requests), func(a, b Request) int { return cmp.Compare(a.ID, b.ID) })
}

// Create writes the request to the book, asks the provider, and books
// what it made. After an error it lists and books the nodes that carry the
// request (a lost response), so that a retry by the caller is a new
// request and never doubles them; the nodes returned are all it booked.
// The request leaves the book once its nodes are booked; if the listing
// failed, it stays, and the next Reconcile adopts them.
func (f *Fleet) Create(ctx context.Context, req CreateRequest) ([]Node, error) {
	defer f.notify(f.booked.Load())
	if req.Request == "" {
		req.Request = NewRequestID()
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	f.ops.RLock()
	defer f.ops.RUnlock()
	rec := Request{ID: req.Request, Pool: req.Pool, Size: req.Size, Count: req.Count, Slots: req.Slots, Time: time.Now()}
	f.mu.Lock()
	if _, dup := f.requests[rec.ID]; dup || f.underway[rec.ID] > 0 {
		f.mu.Unlock()
		return nil, fmt.Errorf("%w: request id %q is in use", ErrInvalid, rec.ID)
	}
	f.underway[rec.ID]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.underway[rec.ID]--; f.underway[rec.ID] <= 0 {
			delete(f.underway, rec.ID)
		}
		f.mu.Unlock()
	}()
	if err := f.write(BookChange{Requests: []Request{rec}}); err != nil {
		return nil, fmt.Errorf("record the create request before creating: %w", err)
	}
	f.mu.Lock()
	f.requests[rec.ID] = rec
	f.mu.Unlock()

	nodes, err := f.p.Create(ctx, req)
	listed := true
	if err != nil {
		// The create may have made nodes whose ids it did not return:
		// find them by the request they carry. A cancelled caller must
		// not keep the fleet from looking.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		all, lerr := f.p.List(lctx)
		cancel()
		if lerr != nil {
			listed = false
			err = errors.Join(err, fmt.Errorf("list nodes after a failed create (the next reconcile adopts them): %w", lerr))
		}
		for _, n := range all {
			if n.Request == req.Request && !slices.ContainsFunc(nodes, func(m Node) bool { return m.ID == n.ID }) {
				f.log.Warn("node of a failed create found; keeping it", "node", n.ID, "request", req.Request)
				nodes = append(nodes, n)
			}
		}
	}
	ch := BookChange{}
	now := time.Now()
	f.mu.Lock()
	for _, n := range nodes {
		m := &Machine{Node: n, Booked: now}
		f.machines[n.ID] = m
		ch.Machines = append(ch.Machines, *m)
	}
	if listed {
		delete(f.requests, rec.ID)
		ch.DropRequests = []string{rec.ID}
	}
	f.mu.Unlock()
	if werr := f.write(ch); werr != nil {
		// The request stays in the book: after a restart the nodes are
		// adopted from it.
		err = errors.Join(err, fmt.Errorf("record the nodes created: %w", werr))
	}
	if len(nodes) > 0 {
		f.log.Info("nodes created", "pool", req.Pool, "request", req.Request, "nodes", ids(nodes))
	}
	return nodes, err
}

// Ensure creates nodes in req.Pool until the book holds n live ones there,
// made as req says (its Count is what is missing).
func (f *Fleet) Ensure(ctx context.Context, req CreateRequest, n int) ([]Node, error) {
	if req.Pool == "" {
		req.Pool = DefaultPool
	}
	have := f.Count(req.Pool)
	if have >= n {
		return nil, nil
	}
	req.Count = n - have
	return f.Create(ctx, req)
}

// Count returns how many machines of pool are live and not being deleted
// ("" counts every pool).
func (f *Fleet) Count(pool string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.machines {
		if m.Live() && !m.Deleting && (pool == "" || m.Pool == pool) {
			n++
		}
	}
	return n
}

// MarkDeleting writes to the book that the machines are to be deleted,
// with cause and reason, and returns them; nothing is asked of the
// provider yet (RetryDeletes does). Machines gone or deleting already are
// left as they are; an id the book does not hold is ErrInvalid.
func (f *Fleet) MarkDeleting(nodeIDs []string, cause, reason string) ([]Machine, error) {
	defer f.notify(f.booked.Load()) // after the unlock below
	f.mu.Lock()
	defer f.mu.Unlock()
	var ch BookChange
	for _, id := range nodeIDs {
		m, ok := f.machines[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: no machine %q in the book", ErrInvalid, id)
		case !m.Live() || m.Deleting:
			continue
		}
		next := *m
		next.Deleting, next.Cause, next.Reason = true, cause, reason
		ch.Machines = append(ch.Machines, next)
	}
	if ch.empty() {
		return nil, nil
	}
	if err := f.write(ch); err != nil {
		return nil, fmt.Errorf("record the delete before deleting: %w", err)
	}
	for _, m := range ch.Machines {
		*f.machines[m.ID] = m
	}
	return ch.Machines, nil
}

// Delete marks the machines deleting and asks the provider to delete
// them; they are gone once it returned nil. After an error they stay
// deleting, and RetryDeletes asks again.
func (f *Fleet) Delete(ctx context.Context, nodeIDs []string) error {
	return f.DeleteFor(ctx, nodeIDs, CauseScale, "deleted")
}

// DeleteFor is Delete with the cause and reason recorded.
func (f *Fleet) DeleteFor(ctx context.Context, nodeIDs []string, cause, reason string) error {
	if _, err := f.MarkDeleting(nodeIDs, cause, reason); err != nil {
		return err
	}
	_, err := f.RetryDeletes(ctx)
	return err
}

// Deleting returns the ids of the machines marked deleting and not yet
// gone.
func (f *Fleet) Deleting() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id, m := range f.machines {
		if m.Live() && m.Deleting {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// RetryDeletes asks the provider to delete every machine marked deleting
// and marks them gone once it returned nil; it returns those. On error
// they stay deleting, for the next call.
func (f *Fleet) RetryDeletes(ctx context.Context) ([]Machine, error) {
	defer f.notify(f.booked.Load())
	f.deleting.Lock()
	defer f.deleting.Unlock()
	f.ops.RLock()
	defer f.ops.RUnlock()
	todo := f.Deleting()
	if len(todo) == 0 {
		return nil, nil
	}
	if err := f.p.Delete(ctx, todo); err != nil {
		f.log.Warn("delete failed; will retry", "nodes", todo, "error", err)
		return nil, fmt.Errorf("delete %v: %w", todo, err)
	}
	now := time.Now()
	var ch BookChange
	f.mu.Lock()
	for _, id := range todo {
		m := f.machines[id]
		if m == nil || !m.Live() {
			continue
		}
		m.Gone = now
		ch.Machines = append(ch.Machines, *m)
	}
	f.mu.Unlock()
	f.log.Info("nodes deleted", "nodes", todo)
	if err := f.write(ch); err != nil {
		// The book still says deleting: the next run deletes them again,
		// which the provider answers with nil for nodes already gone.
		return ch.Machines, fmt.Errorf("record the nodes deleted: %w", err)
	}
	return ch.Machines, nil
}

// Link records that machine id's agent registered as coordinator node
// nodeID.
func (f *Fleet) Link(links map[string]string) error {
	defer f.notify(f.booked.Load()) // after the unlock below
	f.mu.Lock()
	defer f.mu.Unlock()
	var ch BookChange
	for id, nodeID := range links {
		if m := f.machines[id]; m != nil && m.NodeID != nodeID {
			next := *m
			next.NodeID = nodeID
			ch.Machines = append(ch.Machines, next)
		}
	}
	if ch.empty() {
		return nil
	}
	if err := f.write(ch); err != nil {
		return fmt.Errorf("record the nodes of machines: %w", err)
	}
	for _, m := range ch.Machines {
		*f.machines[m.ID] = m
	}
	return nil
}

// Reconcile runs the provider's Reconcile against the book, deleting
// strays unless the fleet keeps them. It books adopted nodes, refreshes
// live ones, marks vanished ones lost (a machine being deleted that
// vanished is left for RetryDeletes, which finds it gone), drops the
// orphan requests once their nodes are adopted, and forgets tombstones
// older than History. The report's Vanished holds the machines marked
// lost.
func (f *Fleet) Reconcile(ctx context.Context) (ReconcileReport, error) {
	return f.reconcile(ctx, !f.keepStrays)
}

// CollectGarbage is Reconcile deleting strays whatever the fleet's
// setting: every node the provider lists that the book neither holds nor
// expects from a request is deleted, even with an empty book.
func (f *Fleet) CollectGarbage(ctx context.Context) (ReconcileReport, error) {
	return f.reconcile(ctx, true)
}

// Strays lists what the provider has that the book neither holds nor
// expects, deleting nothing.
func (f *Fleet) Strays(ctx context.Context) ([]Node, error) {
	f.ops.RLock()
	defer f.ops.RUnlock()
	listed, err := f.p.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	_, strays, _ := Diff(listed, f.reconcileRequest(false))
	return strays, nil
}

func (f *Fleet) reconcileRequest(deleteStrays bool) ReconcileRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	req := ReconcileRequest{DeleteStrays: deleteStrays}
	for id, m := range f.machines {
		if m.Live() {
			req.Known = append(req.Known, id)
		}
	}
	slices.Sort(req.Known)
	req.Pending = slices.Sorted(maps.Keys(f.requests))
	return req
}

func (f *Fleet) reconcile(ctx context.Context, deleteStrays bool) (ReconcileReport, error) {
	defer f.notify(f.booked.Load())
	f.ops.Lock()
	defer f.ops.Unlock()
	req := f.reconcileRequest(deleteStrays)
	r, err := f.p.Reconcile(ctx, req)
	if err != nil && r.Listed == nil {
		return r, fmt.Errorf("reconcile: %w", err)
	}
	now := time.Now()
	var ch BookChange
	f.mu.Lock()
	for _, n := range r.Listed {
		if m := f.machines[n.ID]; m != nil && m.Live() && changed(m.Node, n) {
			m.Node = n
			ch.Machines = append(ch.Machines, *m)
		}
	}
	var lost []string
	for _, id := range r.Vanished {
		m := f.machines[id]
		if m == nil || m.Deleting {
			continue
		}
		m.Lost, m.Gone, m.Cause = true, now, CauseLost
		m.Reason = "vanished: the provider no longer has it"
		ch.Machines = append(ch.Machines, *m)
		lost = append(lost, id)
	}
	r.Vanished = lost
	for _, n := range r.Adopted {
		m := &Machine{Node: n, Booked: now}
		f.machines[n.ID] = m
		ch.Machines = append(ch.Machines, *m)
	}
	if err == nil {
		// A request no create is working on is an orphan: the listing
		// just made showed every node it made.
		for id := range f.requests {
			if f.underway[id] == 0 {
				delete(f.requests, id)
				ch.DropRequests = append(ch.DropRequests, id)
			}
		}
	}
	for id, m := range f.machines {
		if !m.Live() && now.Sub(m.Gone) > f.history {
			delete(f.machines, id)
			ch.DropMachines = append(ch.DropMachines, id)
		}
	}
	f.mu.Unlock()
	werr := f.write(ch)
	for _, n := range r.Adopted {
		f.log.Info("node of a pending create adopted", "node", n.ID, "request", n.Request)
	}
	for _, n := range r.Strays {
		f.log.Warn("stray node: the provider has it, the coordinator did not ask for it", "node", n.ID, "name", n.Name,
			"deleted", slices.Contains(r.Deleted, n.ID))
	}
	for _, id := range lost {
		f.log.Warn("node vanished: the provider no longer has it", "node", id)
	}
	if werr != nil {
		err = errors.Join(err, fmt.Errorf("record the reconcile: %w", werr))
	}
	if err != nil {
		return r, fmt.Errorf("reconcile: %w", err)
	}
	return r, nil
}

// changed reports whether a listing says something new of a node.
func changed(old, listed Node) bool {
	return old.State != listed.State || old.PrivateIP != listed.PrivateIP || old.PublicIP != listed.PublicIP || old.Name != listed.Name
}

// Run reconciles and retries deletes every period until ctx ends, logging
// failures.
func (f *Fleet) Run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := f.Reconcile(ctx); err != nil && ctx.Err() == nil {
			f.log.Error("periodic reconcile failed", "error", err)
		}
		if _, err := f.RetryDeletes(ctx); err != nil && ctx.Err() == nil {
			f.log.Error("retried delete failed", "error", err)
		}
	}
}

func ids(nodes []Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID
	}
	return out
}

func sortedNodes(nodes []Node) []Node {
	slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	return nodes
}
