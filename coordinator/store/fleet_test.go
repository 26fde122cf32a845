package store

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestFleetRecordsRoundTripAndDrop(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().Truncate(time.Millisecond).UTC()
	want := &Fleet{
		Machines: []*Machine{
			{ID: "101", Name: "ml-1", Pool: "default", Size: "s-1", Request: "r1", PrivateIP: "10.0.0.2", State: "running", CreateTime: now, BookTime: now, NodeID: "node-1"},
			{ID: "102", Pool: "default", State: "running", Deleting: true, Cause: "down", Reason: "cluster down", GoneTime: now},
		},
		Requests: []*MachineRequest{{ID: "r2", Pool: "big", Size: "c-8", Count: 2, Time: now}},
		Pools:    []*Pool{{Name: "default", Size: "s-1", Nodes: 2, MinNodes: 1, IdleDelete: time.Hour, UpdateTime: now}},
	}
	if err := s.Save(&Changes{Machines: want.Machines, MachineRequests: want.Requests, Pools: want.Pools}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	got, err := s.LoadFleet()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	if err := s.Save(&Changes{DropMachines: []string{"102"}, DropMachineRequests: []string{"r2"}, DropPools: []string{"default", "never-was"}}); err != nil {
		t.Fatal(err)
	}
	got, err = s.LoadFleet()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Machines) != 1 || got.Machines[0].ID != "101" || len(got.Requests) != 0 || len(got.Pools) != 0 {
		t.Errorf("after the drops: %+v", got)
	}
}
