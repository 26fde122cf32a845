package provider_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
)

// hooked is a Fake whose Create runs a hook first and after.
type hooked struct {
	*providertest.Fake
	before, after func()
}

func (h *hooked) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	if h.before != nil {
		h.before()
	}
	nodes, err := h.Fake.Create(ctx, req)
	if h.after != nil {
		h.after()
	}
	return nodes, err
}

func openFleet(t *testing.T, p provider.Provider, book provider.Book) *provider.Fleet {
	t.Helper()
	f, err := provider.OpenFleet(provider.FleetConfig{Provider: p, Book: book})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFleetWritesTheRequestBeforeCreating(t *testing.T) {
	fake, _ := startFake(t)
	book := &provider.MemoryBook{}
	var inBook []provider.Request
	p := &hooked{Fake: fake, before: func() { inBook, _, _ = book.Load() }}
	fl := openFleet(t, p, book)
	made, err := fl.Create(t.Context(), provider.CreateRequest{Request: "r1", Count: 2, Pool: "p", Size: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if len(inBook) != 1 || inBook[0].ID != "r1" || inBook[0].Count != 2 || inBook[0].Pool != "p" || inBook[0].Size != "s" || inBook[0].Time.IsZero() {
		t.Errorf("book when the provider was asked = %+v, want request r1 for 2 nodes of p/s with its time", inBook)
	}
	reqs, machines, _ := book.Load()
	if len(reqs) != 0 || len(machines) != 2 || machines[0].ID != made[0].ID || machines[0].Booked.IsZero() {
		t.Errorf("book after the create = %+v, %+v; want no request and both machines", reqs, machines)
	}

	book.FailWrites(errors.New("disk full"))
	if _, err := fl.Create(t.Context(), provider.CreateRequest{Request: "r2", Count: 1}); err == nil || fake.Creates() != 1 {
		t.Errorf("Create with a book that cannot record the intent = %v after %d provider creates; want an error and no create", err, fake.Creates())
	}
}

// The coordinator dies after the provider made the nodes and before the
// book recorded them: the next fleet, on the same book, adopts them.
func TestFleetAdoptsTheNodesOfACreateCutShort(t *testing.T) {
	fake, _ := startFake(t)
	book := &provider.MemoryBook{}
	dead := errors.New("coordinator killed")
	p := &hooked{Fake: fake, after: func() { book.FailWrites(dead) }}
	first := openFleet(t, p, book)
	if _, err := first.Create(t.Context(), provider.CreateRequest{Request: "cut", Count: 3}); !errors.Is(err, dead) {
		t.Fatalf("Create = %v, want the write after it to fail", err)
	}

	book.FailWrites(nil) // restarted on the same state
	second := openFleet(t, fake, book)
	if reqs := second.Requests(); len(reqs) != 1 || reqs[0].ID != "cut" {
		t.Fatalf("requests after the restart = %+v, want the orphan", reqs)
	}
	r, err := second.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := fake.List(t.Context())
	got := []int{len(r.Adopted), len(r.Strays), len(r.Deleted), len(listed), len(second.Nodes()), len(second.Requests()), fake.Creates()}
	if diff := cmp.Diff([]int{3, 0, 0, 3, 3, 0, 1}, got); diff != "" {
		t.Errorf("adopted, strays, deleted, listed, booked, requests, creates (-want +got):\n%s", diff)
	}
	t.Logf("coordinator killed between create and store write: %d unknown nodes after the restart, %d adopted", len(r.Strays), len(r.Adopted))
	_, machines, _ := book.Load()
	if len(machines) != 3 {
		t.Errorf("book holds %d machines after the reconcile, want 3", len(machines))
	}
}

func TestFleetMarksGoneOnlyWhenDeleteReturnsNil(t *testing.T) {
	fake, _ := startFake(t)
	book := &provider.MemoryBook{}
	fl := openFleet(t, fake, book)
	made, err := fl.Create(t.Context(), provider.CreateRequest{Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	fake.FailDeletes(3)
	if err := fl.DeleteFor(t.Context(), nodeIDs(made), provider.CauseDown, "cluster down"); err == nil {
		t.Fatal("DeleteFor under a failing provider succeeded")
	}
	if got := fl.Deleting(); len(got) != 3 || fl.Count("") != 0 {
		t.Errorf("deleting %v, counted %d after a failed delete; want all 3 deleting, none counted", got, fl.Count(""))
	}
	// A restart in between keeps them deleting.
	fl = openFleet(t, fake, book)
	tries := 1
	for ; len(fl.Deleting()) > 0 && tries < 10; tries++ {
		fl.RetryDeletes(t.Context())
	}
	listed, _ := fake.List(t.Context())
	t.Logf("delete under 3 injected failures: %d tries, %d nodes left", tries, len(listed))
	if len(listed) != 0 || tries != 4 {
		t.Errorf("%d nodes left after %d tries, want 0 after 4", len(listed), tries)
	}
	for _, m := range fl.Machines() {
		if m.Live() || m.Cause != provider.CauseDown || m.Reason != "cluster down" {
			t.Errorf("machine after the delete = %+v, want a tombstone saying why", m)
		}
	}
}

func TestFleetReconcileMarksVanishedLostAndForgetsOldTombstones(t *testing.T) {
	fake, _ := startFake(t)
	fl, err := provider.OpenFleet(provider.FleetConfig{Provider: fake, History: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	made, err := fl.Create(t.Context(), provider.CreateRequest{Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.MarkDeleting([]string{made[2].ID}, provider.CauseScale, "scaled down"); err != nil {
		t.Fatal(err)
	}
	if err := fake.Delete(t.Context(), []string{made[0].ID, made[2].ID}); err != nil { // behind the fleet's back
		t.Fatal(err)
	}
	r, err := fl.Reconcile(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{made[0].ID}, r.Vanished); diff != "" {
		t.Errorf("vanished (the one being deleted is not lost) (-want +got):\n%s", diff)
	}
	m, ok := fl.Machine(made[0].ID)
	if !ok || !m.Lost || m.Live() || m.Cause != provider.CauseLost {
		t.Errorf("vanished machine = %+v, want a lost tombstone", m)
	}
	if d, _ := fl.Machine(made[2].ID); !d.Live() || !d.Deleting {
		t.Errorf("machine being deleted = %+v, want it still deleting", d)
	}
	if _, err := fl.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := fl.Machine(made[0].ID); ok {
		t.Error("a tombstone older than History is still in the book")
	}
}

func TestFleetCollectGarbageDeletesEveryUnknownNodeEvenKeepingStrays(t *testing.T) {
	fake, _ := startFake(t)
	for _, id := range []string{"a", "b", "c"} {
		fake.Add(provider.Node{ID: id, Request: "old-run"})
	}
	fl, err := provider.OpenFleet(provider.FleetConfig{Provider: fake, KeepStrays: true})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := fl.Reconcile(t.Context()); err != nil || len(r.Deleted) != 0 || len(r.Strays) != 3 {
		t.Fatalf("Reconcile keeping strays = %+v, %v; want 3 strays kept", r, err)
	}
	r, err := fl.CollectGarbage(t.Context())
	if err != nil || len(r.Deleted) != 3 {
		t.Fatalf("CollectGarbage = %+v, %v; want 3 deleted", r, err)
	}
	if listed, _ := fake.List(t.Context()); len(listed) != 0 {
		t.Errorf("%d nodes left after gc with an empty book, want 0", len(listed))
	}
}

func TestFleetCreateRefusesARequestIDInUse(t *testing.T) {
	fake, _ := startFake(t)
	book := &provider.MemoryBook{}
	if err := book.Write(provider.BookChange{Requests: []provider.Request{{ID: "r1", Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	fl := openFleet(t, fake, book)
	if _, err := fl.Create(t.Context(), provider.CreateRequest{Request: "r1", Count: 1}); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("Create with the id of an orphan = %v, want ErrInvalid", err)
	}
}
