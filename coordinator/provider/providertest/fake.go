package providertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// ErrLostResponse is the error of a create whose response Fake "lost".
var ErrLostResponse = errors.New("fake: create response lost")

// Fake is an in-memory provider.Provider: nodes are records, each minted
// its join token at create. Hooks make it fail the way a cloud API does.
// The zero value is not usable; call NewFake.
type Fake struct {
	name string

	mu         sync.Mutex // protects everything below
	target     provider.Target
	started    bool
	closed     bool
	nodes      map[string]provider.Node
	next       int
	tokens     map[string]string // node id → its join token
	loseCreate int
	failDelete int
	creates    int
}

var _ provider.Provider = (*Fake)(nil)

// NewFake returns a fake provider called name ("fake" if empty).
func NewFake(name string) *Fake {
	return &Fake{name: cmp.Or(name, "fake"), nodes: map[string]provider.Node{}, tokens: map[string]string{}}
}

// Name returns the fake's name.
func (f *Fake) Name() string { return f.name }

// Start records t.
func (f *Fake) Start(ctx context.Context, t provider.Target) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started || f.closed {
		return errors.New("fake: started twice")
	}
	f.target, f.started = t, true
	return nil
}

// Target returns what Start was given.
func (f *Fake) Target() provider.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.target
}

// LoseCreates makes the next n creates make their nodes, then fail with
// ErrLostResponse and return none, as a create whose response was lost.
func (f *Fake) LoseCreates(n int) {
	f.mu.Lock()
	f.loseCreate = n
	f.mu.Unlock()
}

// FailDeletes makes the next n deletes fail, deleting nothing.
func (f *Fake) FailDeletes(n int) {
	f.mu.Lock()
	f.failDelete = n
	f.mu.Unlock()
}

// Creates returns how many Create calls reached the fake.
func (f *Fake) Creates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}

// Token returns the join token minted for node id.
func (f *Fake) Token(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens[id]
}

// Add makes a node outside any Create (a stray made by hand).
func (f *Fake) Add(n provider.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.ID] = n
}

// Create makes req.Count running nodes "fake-<n>", each with its own join
// token minted through the Target; with req.FoundSwarm the first is the
// swarm's founder.
func (f *Fake) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started || f.closed {
		return nil, provider.ErrNotStarted
	}
	f.creates++
	var made []provider.Node
	for range req.Count {
		f.next++
		id := "fake-" + strconv.Itoa(f.next)
		if f.target.MintToken == nil {
			return made, errors.New("fake: no way to mint a join token")
		}
		tok, err := f.target.MintToken(id, req.Slots)
		if err != nil {
			return made, fmt.Errorf("mint a join token for %s: %w", id, err)
		}
		n := provider.Node{
			ID: id, Name: id, Pool: req.Pool, Size: req.Size, Request: req.Request,
			PrivateIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(f.next)}),
			State:     provider.StateRunning, Created: time.Now(), Founder: req.FoundSwarm && len(made) == 0,
		}
		f.nodes[id], f.tokens[id] = n, tok
		made = append(made, n)
	}
	if f.loseCreate > 0 {
		f.loseCreate--
		return nil, ErrLostResponse
	}
	return made, nil
}

// Delete removes the nodes; unknown ids are gone already.
func (f *Fake) Delete(ctx context.Context, ids []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started || f.closed {
		return provider.ErrNotStarted
	}
	if f.failDelete > 0 {
		f.failDelete--
		return fmt.Errorf("fake: delete %v failed", ids)
	}
	for _, id := range ids {
		delete(f.nodes, id)
	}
	return nil
}

// List returns the nodes, sorted by id.
func (f *Fake) List(ctx context.Context) ([]provider.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.started || f.closed {
		return nil, provider.ErrNotStarted
	}
	out := make([]provider.Node, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b provider.Node) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Reconcile is provider.ReconcileByList.
func (f *Fake) Reconcile(ctx context.Context, req provider.ReconcileRequest) (provider.ReconcileReport, error) {
	return provider.ReconcileByList(ctx, f, req)
}

// Close ends the fake; its nodes are kept, as a cloud's are.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Closed reports whether Close was called.
func (f *Fake) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// Preparing is a Fake that is a provider.Preparer returning Prepared.
type Preparing struct {
	*Fake
	// Prepared is what Prepare returns.
	Prepared provider.Prepared

	mu       sync.Mutex // protects prepares
	prepares int
}

var _ provider.Preparer = (*Preparing)(nil)

// Prepare returns p.Prepared.
func (p *Preparing) Prepare(ctx context.Context) (provider.Prepared, error) {
	p.mu.Lock()
	p.prepares++
	p.mu.Unlock()
	return p.Prepared, nil
}

// Prepares returns how many times Prepare was called.
func (p *Preparing) Prepares() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.prepares
}
