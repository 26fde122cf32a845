package client

import (
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestJoiningIsTheLastStepOfComingUp(t *testing.T) {
	const (
		booted     = cloudmlv1.MachineState_MACHINE_STATE_BOOTED
		registered = cloudmlv1.MachineState_MACHINE_STATE_REGISTERED
		ready      = cloudmlv1.MachineState_MACHINE_STATE_READY
		deleting   = cloudmlv1.MachineState_MACHINE_STATE_DELETING
	)
	for _, c := range []struct {
		states []cloudmlv1.MachineState
		want   bool
	}{
		{[]cloudmlv1.MachineState{registered, ready}, true},
		{[]cloudmlv1.MachineState{registered, registered}, true},
		{[]cloudmlv1.MachineState{ready, ready}, false},
		{[]cloudmlv1.MachineState{registered, booted}, false},
		{[]cloudmlv1.MachineState{registered, deleting}, false},
		{nil, false},
	} {
		var ms []*cloudmlv1.Machine
		for _, s := range c.states {
			ms = append(ms, &cloudmlv1.Machine{State: s})
		}
		if got := joining(ms); got != c.want {
			t.Errorf("joining(%v) = %v, want %v", c.states, got, c.want)
		}
	}
}
