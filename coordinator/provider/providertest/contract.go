package providertest

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// Minted counts the join tokens a provider asked for, as a Target's
// MintToken.
type Minted struct {
	mu     sync.Mutex // protects labels
	labels []string
}

// Mint is a provider.Target.MintToken that records label.
func (m *Minted) Mint(label string, slots int) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.labels = append(m.labels, label)
	return "CMLTKN-1-test-" + label, nil
}

// Count returns how many tokens were minted.
func (m *Minted) Count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.labels)
}

// Contract checks that a provider keeps the rules of provider.Provider
// that the coordinator relies on: nodes carry their pool and request, each
// gets a join token, List shows what exists, Delete is idempotent, and
// Reconcile adopts, deletes strays and reports vanished nodes. start must
// return a provider started with t, with no nodes, closed by the caller.
func Contract(t *testing.T, start func(t *testing.T, target provider.Target) provider.Provider) {
	t.Helper()
	ctx := t.Context()
	minted := &Minted{}
	p := start(t, provider.Target{Addr: "127.0.0.1:7070", MintToken: minted.Mint})

	listIDs := func(what string) []string {
		t.Helper()
		nodes, err := p.List(ctx)
		if err != nil {
			t.Fatalf("List %s: %v", what, err)
		}
		return ids(nodes)
	}
	create := func(req provider.CreateRequest) []provider.Node {
		t.Helper()
		nodes, err := p.Create(ctx, req)
		if err != nil {
			t.Fatalf("Create %+v: %v", req, err)
		}
		if len(nodes) != req.Count {
			t.Fatalf("Create %+v made %d nodes, want %d", req, len(nodes), req.Count)
		}
		return nodes
	}
	if ids := listIDs("at start"); len(ids) != 0 {
		t.Fatalf("a new provider lists %v, want nothing", ids)
	}

	if _, err := p.Create(ctx, provider.CreateRequest{Request: "r0", Count: 0}); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("Create of 0 nodes = %v, want ErrInvalid", err)
	}
	made := create(provider.CreateRequest{Request: "r1", Count: 2, Pool: "p1"})
	for _, n := range made {
		if n.ID == "" || n.Pool != "p1" || n.Request != "r1" || n.State == provider.StateDeleting {
			t.Errorf("created node %+v, want an id, pool p1, request r1", n)
		}
	}
	if made[0].ID == made[1].ID {
		t.Errorf("two nodes share id %s", made[0].ID)
	}
	if got := minted.Count(); got < 2 {
		t.Errorf("%d join tokens minted for 2 nodes, want one each at least", got)
	}
	a, b := made[0].ID, made[1].ID
	if diff := cmp.Diff(sorted(a, b), listIDs("after create")); diff != "" {
		t.Errorf("List after create (-want +got):\n%s", diff)
	}
	if def := create(provider.CreateRequest{Request: "r1b", Count: 1}); def[0].Pool != provider.DefaultPool {
		t.Errorf("a node created without a pool is in %q, want %q", def[0].Pool, provider.DefaultPool)
	} else if err := p.Delete(ctx, []string{def[0].ID}); err != nil {
		t.Fatalf("Delete %s: %v", def[0].ID, err)
	}

	if err := p.Delete(ctx, []string{a}); err != nil {
		t.Fatalf("Delete %s: %v", a, err)
	}
	if err := p.Delete(ctx, []string{a}); err != nil {
		t.Errorf("Delete of a node already gone = %v, want nil", err)
	}
	if diff := cmp.Diff([]string{b}, listIDs("after delete")); diff != "" {
		t.Errorf("List after deleting %s (-want +got):\n%s", a, diff)
	}

	adopt := create(provider.CreateRequest{Request: "r2", Count: 1})[0].ID
	stray := create(provider.CreateRequest{Request: "r3", Count: 1})[0].ID
	r, err := p.Reconcile(ctx, provider.ReconcileRequest{Known: []string{a, b}, Pending: []string{"r2"}, DeleteStrays: true})
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	got := struct{ Adopted, Strays, Deleted, Vanished []string }{ids(r.Adopted), ids(r.Strays), r.Deleted, r.Vanished}
	want := struct{ Adopted, Strays, Deleted, Vanished []string }{[]string{adopt}, []string{stray}, []string{stray}, []string{a}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Reconcile (known %s and %s, pending r2) (-want +got):\n%s", a, b, diff)
	}
	if diff := cmp.Diff(sorted(b, adopt), listIDs("after reconcile")); diff != "" {
		t.Errorf("List after Reconcile deleted the stray (-want +got):\n%s", diff)
	}

	if err := p.Delete(ctx, []string{b, adopt}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if ids := listIDs("after deleting all"); len(ids) != 0 {
		t.Errorf("List after deleting every node = %v, want nothing", ids)
	}
}

func ids(nodes []provider.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
