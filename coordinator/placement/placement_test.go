package placement

import (
	"fmt"
	"math"
	"testing"
)

func TestSlotsFor(t *testing.T) {
	for cpus, want := range map[float64]int32{-1: 1, 0: 1, 0.5: 1, 1: 1, 1.01: 2, 4: 4, 1e12: math.MaxInt32 / 2} {
		if got := SlotsFor(cpus); got != want {
			t.Errorf("SlotsFor(%g) = %d, want %d", cpus, got, want)
		}
	}
}

// The least loaded node that fits takes each task, ties by order; a
// node's free slots fall with each placement.
func TestPlaceLeastLoadedFirst(t *testing.T) {
	p := NewPool([]Node{{"a", 4, 2}, {"b", 4, 3}, {"c", 3, 3}})
	if p.Len() != 3 || p.MaxSlots() != 4 {
		t.Fatalf("Len, MaxSlots = %d, %d; want 3, 4", p.Len(), p.MaxSlots())
	}
	var got []string
	for range 20 { // bounded: a pool that never fills is a failure, not a hang
		id, ok := p.Place(1)
		if !ok {
			break
		}
		got = append(got, id)
	}
	// b and c tie at 3 free: b, the first; then c (3 over 2 and 2); then
	// all tie at 2, and at 1, so the order repeats.
	want := "[b c a b c a b c]"
	if fmt.Sprint(got) != want {
		t.Fatalf("placed on %v, want %v", got, want)
	}
	if why := p.Full(1); why != "all 3 nodes busy (11/11 slots used)" {
		t.Errorf("Full(1) = %q", why)
	}
}

// A task that needs more slots takes them on one node, and once a need
// fits nowhere no larger one is tried in the pass.
func TestPlaceWideTasks(t *testing.T) {
	p := NewPool([]Node{{"a", 4, 1}, {"b", 4, 2}})
	if id, ok := p.Place(2); !ok || id != "b" {
		t.Fatalf("Place(2) = %q, %v; want b", id, ok)
	}
	if _, ok := p.Place(2); ok {
		t.Fatal("a need of 2 fitted a pool with 1 free slot on each node")
	}
	if why := p.Full(2); why != "no node has 2 free slots (7/8 slots used on 2 nodes)" {
		t.Errorf("Full(2) = %q", why)
	}
	p.nodes[0].Free = 3 // not in a pass: shows the pass no longer looks
	if _, ok := p.Place(3); ok {
		t.Fatal("a need larger than one that did not fit was tried again")
	}
	if id, ok := p.Place(1); !ok || id != "a" {
		t.Fatalf("Place(1) = %q, %v; want a", id, ok)
	}
}

// A node whose active attempts hold more than its slots (its slots were
// lowered) counts as full, not as negative room.
func TestOverfullNodeCountsFull(t *testing.T) {
	p := NewPool([]Node{{"a", 2, -2}, {"b", 2, 1}})
	if why := p.Full(1); why != "all 2 nodes busy (3/4 slots used)" {
		t.Errorf("Full(1) = %q", why)
	}
	if empty := NewPool(nil); empty.Len() != 0 || empty.MaxSlots() != 0 {
		t.Error("an empty pool has nodes")
	}
}
