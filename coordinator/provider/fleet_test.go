package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func startFake(t *testing.T) (*providertest.Fake, *providertest.Minted) {
	t.Helper()
	f := providertest.NewFake("")
	m := &providertest.Minted{}
	if err := f.Start(t.Context(), provider.Target{Addr: "127.0.0.1:1", MintToken: m.Mint}); err != nil {
		t.Fatal(err)
	}
	return f, m
}

func nodeIDs(nodes []provider.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func TestFakeKeepsTheContract(t *testing.T) {
	providertest.Contract(t, func(t *testing.T, target provider.Target) provider.Provider {
		f := providertest.NewFake("")
		if err := f.Start(t.Context(), target); err != nil {
			t.Fatal(err)
		}
		return f
	})
}

func TestDiff(t *testing.T) {
	listed := []provider.Node{{ID: "a"}, {ID: "b", Request: "r1"}, {ID: "c", Request: "r2"}, {ID: "d"}}
	adopted, strays, vanished := provider.Diff(listed, provider.ReconcileRequest{Known: []string{"a", "z"}, Pending: []string{"r1"}})
	got := [][]string{nodeIDs(adopted), nodeIDs(strays), vanished}
	if diff := cmp.Diff([][]string{{"b"}, {"c", "d"}, {"z"}}, got); diff != "" {
		t.Errorf("Diff: adopted, strays, vanished (-want +got):\n%s", diff)
	}
}

func TestReconcileByListOnlyReportsWhenAsked(t *testing.T) {
	f, _ := startFake(t)
	f.Add(provider.Node{ID: "hand-made"})
	r, err := provider.ReconcileByList(t.Context(), f, provider.ReconcileRequest{})
	if err != nil || len(r.Strays) != 1 || len(r.Deleted) != 0 {
		t.Fatalf("ReconcileByList without DeleteStrays = %+v, %v; want one stray, none deleted", r, err)
	}
	if nodes, _ := f.List(t.Context()); len(nodes) != 1 {
		t.Errorf("the stray was deleted: %v", nodes)
	}
}

func TestCreateRequestValidate(t *testing.T) {
	for _, r := range []provider.CreateRequest{
		{Request: "r", Count: 0},
		{Request: "r", Count: 1, Slots: -1},
		{Request: "r", Count: 1, Pool: "Big"},
		{Request: "r", Count: 1, Pool: "a:b"},
		{Request: "", Count: 1},
		{Request: "r_1", Count: 1},
	} {
		if err := r.Validate(); !errors.Is(err, provider.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", r, err)
		}
	}
	r := provider.CreateRequest{Request: provider.NewRequestID(), Count: 1}
	if err := r.Validate(); err != nil || r.Pool != provider.DefaultPool {
		t.Errorf("Validate of a fresh request id = %v, pool %q", err, r.Pool)
	}
}

func TestFleetCreateBooksAndEnsureCountsThePool(t *testing.T) {
	f, m := startFake(t)
	fl := provider.NewFleet(f, nil, false)
	made, err := fl.Ensure(t.Context(), provider.CreateRequest{}, 2)
	if err != nil || len(made) != 2 {
		t.Fatalf("Ensure 2 = %v, %v", made, err)
	}
	if made[0].Request == "" || made[0].Request != made[1].Request || made[0].Pool != provider.DefaultPool {
		t.Errorf("nodes of one Ensure: %+v; want one request id and the default pool", made)
	}
	if m.Count() != 2 || f.Token(made[0].ID) == f.Token(made[1].ID) {
		t.Errorf("%d tokens minted, first two %q %q; want one per node", m.Count(), f.Token(made[0].ID), f.Token(made[1].ID))
	}
	if more, err := fl.Ensure(t.Context(), provider.CreateRequest{Pool: provider.DefaultPool}, 2); err != nil || len(more) != 0 {
		t.Errorf("Ensure of a full pool made %v, %v", more, err)
	}
	if _, err := fl.Create(t.Context(), provider.CreateRequest{Count: 1, Pool: "big", Size: "c-8"}); err != nil {
		t.Fatal(err)
	}
	if more, err := fl.Ensure(t.Context(), provider.CreateRequest{Pool: provider.DefaultPool}, 3); err != nil || len(more) != 1 {
		t.Errorf("Ensure 3 over 2 in the pool (and one in another) made %v, %v; want 1", more, err)
	}
	if diff := cmp.Diff([]string{"fake-1", "fake-2", "fake-3", "fake-4"}, nodeIDs(fl.Nodes())); diff != "" {
		t.Errorf("book (-want +got):\n%s", diff)
	}
}

// A create whose response is lost made its nodes: the fleet lists by the
// request, books them, and a reconcile does not take them for strays.
func TestFleetBooksTheNodesOfALostCreate(t *testing.T) {
	f, _ := startFake(t)
	fl := provider.NewFleet(f, nil, false)
	f.LoseCreates(1)
	made, err := fl.Create(t.Context(), provider.CreateRequest{Request: "lost", Count: 2})
	if !errors.Is(err, providertest.ErrLostResponse) {
		t.Fatalf("Create = %v, want the lost response", err)
	}
	if diff := cmp.Diff([]string{"fake-1", "fake-2"}, nodeIDs(made)); diff != "" {
		t.Errorf("nodes found after the lost response (-want +got):\n%s", diff)
	}
	r, err := fl.Reconcile(t.Context())
	if err != nil || len(r.Strays) != 0 || len(r.Vanished) != 0 {
		t.Errorf("Reconcile after a lost create = %+v, %v; want nothing stray or vanished", r, err)
	}
	if nodes, _ := f.List(t.Context()); len(nodes) != 2 || f.Creates() != 1 {
		t.Errorf("%d nodes after %d creates, want 2 after 1", len(nodes), f.Creates())
	}
}

func TestFleetReconcileDeletesStraysAndDropsVanished(t *testing.T) {
	f, _ := startFake(t)
	fl := provider.NewFleet(f, nil, false)
	made, err := fl.Create(t.Context(), provider.CreateRequest{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	f.Add(provider.Node{ID: "stray-1"})
	if err := f.Delete(t.Context(), []string{made[0].ID}); err != nil { // behind the fleet's back
		t.Fatal(err)
	}
	r, err := fl.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := [][]string{nodeIDs(r.Strays), r.Deleted, r.Vanished, nodeIDs(fl.Nodes())}
	if diff := cmp.Diff([][]string{{"stray-1"}, {"stray-1"}, {made[0].ID}, {made[1].ID}}, got); diff != "" {
		t.Errorf("strays, deleted, vanished, book (-want +got):\n%s", diff)
	}
	keep := provider.NewFleet(f, nil, true)
	f.Add(provider.Node{ID: "stray-2"})
	if r, err := keep.Reconcile(t.Context()); err != nil || len(r.Deleted) != 0 || len(r.Strays) != 2 {
		t.Errorf("Reconcile keeping strays = %+v, %v; want 2 strays reported, none deleted", r, err)
	}
}

func TestFleetDeleteDropsOnlyWhatIsGone(t *testing.T) {
	f, _ := startFake(t)
	fl := provider.NewFleet(f, nil, false)
	made, err := fl.Create(t.Context(), provider.CreateRequest{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	f.FailDeletes(1)
	if err := fl.Delete(t.Context(), nodeIDs(made)); err == nil {
		t.Fatal("Delete under a failing provider succeeded")
	}
	if len(fl.Nodes()) != 2 {
		t.Errorf("book after a failed delete = %v, want both nodes", nodeIDs(fl.Nodes()))
	}
	if err := fl.Delete(t.Context(), nodeIDs(made)); err != nil || len(fl.Nodes()) != 0 {
		t.Errorf("Delete again = %v, book %v", err, nodeIDs(fl.Nodes()))
	}
}

func TestFleetRunReconcilesPeriodically(t *testing.T) {
	f, _ := startFake(t)
	fl := provider.NewFleet(f, nil, false)
	f.Add(provider.Node{ID: "stray"})
	done := make(chan struct{})
	runCtx, stop := context.WithCancel(t.Context())
	go func() { fl.Run(runCtx, time.Millisecond); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if nodes, _ := f.List(t.Context()); len(nodes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the periodic reconcile did not delete the stray")
		}
	}
	stop()
	<-done
}

// TestFleetTellsChangedOnlyOfBookedChanges: Changed is called after a call
// that booked a change, once it shows, and not after one that changed
// nothing.
func TestFleetTellsChangedOnlyOfBookedChanges(t *testing.T) {
	f, _ := startFake(t)
	var fl *provider.Fleet
	calls, shown := 0, 0
	fl, err := provider.OpenFleet(provider.FleetConfig{Provider: f, Changed: func() {
		calls++
		shown = len(fl.Machines())
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Create(t.Context(), provider.CreateRequest{Count: 2}); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || shown != 2 {
		t.Fatalf("after a create of 2: %d calls, the last seeing %d machines; want 1 seeing 2", calls, shown)
	}
	if _, err := fl.RetryDeletes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := fl.Link(nil); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("%d calls after a RetryDeletes and a Link that changed nothing, want still 1", calls)
	}
	if err := fl.Delete(t.Context(), nodeIDs(fl.Nodes())[:1]); err != nil {
		t.Fatal(err)
	}
	if calls < 2 || len(fl.Nodes()) != 1 {
		t.Errorf("after a delete: %d calls, %d nodes; want another call and 1 node", calls, len(fl.Nodes()))
	}
}
