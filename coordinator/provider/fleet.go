package provider

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Fleet is the coordinator's side of a Provider: the book of the nodes it
// asked for (known nodes, and create requests under way), kept in step
// with the provider by Reconcile. The book lives in memory, which suits
// providers whose nodes end with the coordinator (local, netns); a provider
// whose nodes outlive it (DigitalOcean) needs the book in the coordinator's
// store, or a restarted coordinator would take its nodes for strays.
type Fleet struct {
	p          Provider
	log        hclog.Logger
	keepStrays bool

	// ops lets creates and deletes run together but not during a
	// reconcile, which would take a node that a create is making for a
	// stray, or a node being deleted for vanished.
	ops sync.RWMutex

	mu      sync.Mutex      // protects known, pending
	known   map[string]Node // by provider id
	pending map[string]int  // create request id → creates under way
}

// NewFleet returns an empty book over p. keepStrays makes Reconcile report
// strays without deleting them.
func NewFleet(p Provider, log hclog.Logger, keepStrays bool) *Fleet {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Fleet{p: p, log: log, keepStrays: keepStrays, known: map[string]Node{}, pending: map[string]int{}}
}

// Provider returns the provider the fleet drives.
func (f *Fleet) Provider() Provider { return f.p }

// Nodes returns the known nodes, sorted by id, as last created or listed.
func (f *Fleet) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedNodes(slices.Collect(maps.Values(f.known)))
}

// Create records the request as pending, asks the provider, and books what
// it made. After an error it lists and books the nodes that carry the
// request (a lost response), so that a retry by the caller is a new
// request and never doubles them; the nodes returned are all it booked.
func (f *Fleet) Create(ctx context.Context, req CreateRequest) ([]Node, error) {
	if req.Request == "" {
		req.Request = NewRequestID()
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	f.ops.RLock()
	defer f.ops.RUnlock()
	f.mu.Lock()
	f.pending[req.Request]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.pending[req.Request]--; f.pending[req.Request] <= 0 {
			delete(f.pending, req.Request)
		}
		f.mu.Unlock()
	}()
	nodes, err := f.p.Create(ctx, req)
	if err != nil {
		listed, lerr := f.p.List(ctx)
		if lerr != nil {
			err = errors.Join(err, fmt.Errorf("list nodes after a failed create: %w", lerr))
		}
		for _, n := range listed {
			if n.Request == req.Request && !slices.ContainsFunc(nodes, func(m Node) bool { return m.ID == n.ID }) {
				f.log.Warn("node of a failed create found; keeping it", "node", n.ID, "request", req.Request)
				nodes = append(nodes, n)
			}
		}
	}
	f.book(nodes...)
	if len(nodes) > 0 {
		f.log.Info("nodes created", "pool", req.Pool, "request", req.Request, "nodes", ids(nodes))
	}
	return nodes, err
}

// Ensure creates nodes in pool until the book holds n there (with the
// provider's default size and slots).
func (f *Fleet) Ensure(ctx context.Context, pool string, n int) ([]Node, error) {
	if pool == "" {
		pool = DefaultPool
	}
	have := 0
	for _, node := range f.Nodes() {
		if node.Pool == pool {
			have++
		}
	}
	if have >= n {
		return nil, nil
	}
	return f.Create(ctx, CreateRequest{Count: n - have, Pool: pool})
}

// Delete asks the provider to delete the nodes and drops them from the
// book once they are gone. After an error, it drops those no longer
// listed.
func (f *Fleet) Delete(ctx context.Context, nodeIDs []string) error {
	f.ops.RLock()
	defer f.ops.RUnlock()
	err := f.p.Delete(ctx, nodeIDs)
	gone := nodeIDs
	if err != nil {
		listed, lerr := f.p.List(ctx)
		if lerr != nil {
			return errors.Join(err, fmt.Errorf("list nodes after a failed delete: %w", lerr))
		}
		gone = slices.DeleteFunc(slices.Clone(nodeIDs), func(id string) bool {
			return slices.ContainsFunc(listed, func(n Node) bool { return n.ID == id })
		})
	}
	f.mu.Lock()
	for _, id := range gone {
		delete(f.known, id)
	}
	f.mu.Unlock()
	if len(gone) > 0 {
		f.log.Info("nodes deleted", "nodes", gone)
	}
	return err
}

// Reconcile runs the provider's Reconcile against the book, books adopted
// nodes, refreshes known ones, and drops vanished ones; it logs strays and
// vanished nodes.
func (f *Fleet) Reconcile(ctx context.Context) (ReconcileReport, error) {
	f.ops.Lock()
	defer f.ops.Unlock()
	f.mu.Lock()
	req := ReconcileRequest{
		Known:        slices.Sorted(maps.Keys(f.known)),
		Pending:      slices.Sorted(maps.Keys(f.pending)),
		DeleteStrays: !f.keepStrays,
	}
	f.mu.Unlock()
	r, err := f.p.Reconcile(ctx, req)
	f.mu.Lock()
	for _, n := range r.Listed {
		if _, ok := f.known[n.ID]; ok {
			f.known[n.ID] = n
		}
	}
	for _, id := range r.Vanished {
		delete(f.known, id)
	}
	f.mu.Unlock()
	f.book(r.Adopted...)
	for _, n := range r.Adopted {
		f.log.Info("node of a pending create adopted", "node", n.ID, "request", n.Request)
	}
	for _, n := range r.Strays {
		f.log.Warn("stray node: the provider has it, the coordinator did not ask for it", "node", n.ID, "name", n.Name,
			"deleted", slices.Contains(r.Deleted, n.ID))
	}
	for _, id := range r.Vanished {
		f.log.Warn("node vanished: the provider no longer has it", "node", id)
	}
	if err != nil {
		return r, fmt.Errorf("reconcile: %w", err)
	}
	return r, nil
}

// Run reconciles every period until ctx ends, logging failures.
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
	}
}

func (f *Fleet) book(nodes ...Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range nodes {
		f.known[n.ID] = n
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
