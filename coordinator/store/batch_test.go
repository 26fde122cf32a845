package store

import (
	"errors"
	"sync/atomic"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestWriteAppliesBatchesInOrder(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	enc := func(c *Changes) *Batch {
		t.Helper()
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := enc(&Changes{
		Tasks:    []*Task{{JobID: "j", Index: 1, State: cloudmlv1.TaskState_TASK_STATE_ASSIGNED}, {JobID: "j", Index: 0}},
		Machines: []*Machine{{ID: "m1", State: "running"}, {ID: "m2", State: "running"}},
	})
	second := enc(&Changes{
		Tasks:        []*Task{{JobID: "j", Index: 1, State: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED}},
		DropMachines: []string{"m1"},
	})
	if first.Len() != 4 || second.Len() != 2 {
		t.Fatalf("batch lengths %d and %d, want 4 and 2", first.Len(), second.Len())
	}
	if err := s.Write(first, second); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Tasks) != 2 || snap.Tasks[1].State != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Errorf("tasks %+v: want the second batch's state of task 1", snap.Tasks)
	}
	fleet, err := s.LoadFleet()
	if err != nil {
		t.Fatal(err)
	}
	if len(fleet.Machines) != 1 || fleet.Machines[0].ID != "m2" {
		t.Errorf("machines %+v: want m2 alone (m1 dropped by the later batch)", fleet.Machines)
	}
}

func TestWriteFaultWritesNothing(t *testing.T) {
	for _, point := range []string{FaultWrite, FaultSync} {
		t.Run(point, func(t *testing.T) {
			var failing atomic.Bool
			s, err := OpenWith(t.TempDir(), Options{Fault: func(p string) error {
				if failing.Load() && p == point {
					return ErrInjected
				}
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Save(&Changes{Jobs: []*Job{{ID: "kept"}}}); err != nil {
				t.Fatal(err)
			}
			failing.Store(true)
			err = s.Save(&Changes{Jobs: []*Job{{ID: "lost"}}})
			if !errors.Is(err, ErrInjected) {
				t.Fatalf("save with fault at %s: %v, want ErrInjected", point, err)
			}
			if err := s.Probe(); !errors.Is(err, ErrInjected) {
				t.Errorf("probe while failing: %v, want ErrInjected", err)
			}
			failing.Store(false)
			if err := s.Probe(); err != nil {
				t.Errorf("probe once the fault is gone: %v", err)
			}
			snap, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Jobs) != 1 || snap.Jobs[0].ID != "kept" {
				t.Errorf("jobs after a failed write: %+v, want only kept", snap.Jobs)
			}
		})
	}
}
