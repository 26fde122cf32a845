package coordinator

import (
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator/provider"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// founderAndOther starts a coordinator on a fake cloud, scales its
// cluster, with no swarm, to two machines and returns the one made to
// found the swarm as it boots, and the other.
func founderAndOther(t *testing.T) (h *harness, cl *cloud, founder, other provider.Node) {
	t.Helper()
	cl = newCloud(t)
	h = startFleet(t, "", cl)
	h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 2})
	nodes, err := cl.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Founder {
			founder = n
		} else {
			other = n
		}
	}
	if founder.ID == "" || other.ID == "" {
		t.Fatalf("machines %+v: want one made to found the swarm and one not", nodes)
	}
	return h, cl, founder, other
}

// machineNode registers and connects a Docker agent on machine m.
func machineNode(t *testing.T, h *harness, m provider.Node, addr string) *fakeAgent {
	t.Helper()
	a := newAgentWith(t, h, &cloudmlv1.RegisterRequest{Hostname: m.Name, Address: addr, Slots: 2, Runtime: runtimeDocker, ProviderId: m.ID})
	a.open()
	return a
}

// asksToFound asserts that a is asked to found the swarm, advertised at
// addr.
func asksToFound(t *testing.T, a *fakeAgent, addr, when string) {
	t.Helper()
	if init := a.nextOther().GetSwarmInit(); init.GetAdvertiseAddr() != addr {
		t.Fatalf("%s: node %s got %v, want SwarmInit advertising %s", when, a.id, init, addr)
	}
}

// noCommand asserts that a has been sent no swarm or staging command,
// behind a barrier.
func noCommand(t *testing.T, a *fakeAgent) {
	t.Helper()
	a.barrier()
	select {
	case got := <-a.others:
		t.Fatalf("agent %s: unexpected command %v", a.id, got)
	default:
	}
}

// TestTheFounderMachineFoundsTheSwarm: a node that registers before the
// machine made to found the swarm is not asked to found it (that would be
// a second swarm); the founder is, and the other joins the swarm it
// reports. Machines made once there is a swarm found nothing.
func TestTheFounderMachineFoundsTheSwarm(t *testing.T) {
	h, cl, founder, other := founderAndOther(t)

	o := machineNode(t, h, other, "10.0.0.12")
	noCommand(t, o)
	f := machineNode(t, h, founder, "10.0.0.11")
	asksToFound(t, f, "10.0.0.11", "the founder, registered second")
	f.reportSwarm(&cloudmlv1.ReportSwarmRequest{SwarmNodeId: "sw-1", Role: cloudmlv1.SwarmRole_SWARM_ROLE_MANAGER,
		ManagerAddr: "10.0.0.11:2377", WorkerJoinToken: "SWMTKN-1-secret"})
	if join := o.nextOther().GetSwarmJoin(); join.GetManagerAddrs()[0] != "10.0.0.11:2377" {
		t.Fatalf("the other node got %v, want a join of the founder's swarm", join)
	}

	h.scale(&cloudmlv1.ScalePoolRequest{Nodes: 3})
	nodes, err := cl.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	founders := 0
	for _, n := range nodes {
		if n.Founder {
			founders++
		}
	}
	if founders != 1 {
		t.Errorf("%d machines made to found the swarm after a scale of a cluster with one, want 1: %+v", founders, nodes)
	}
}

// TestAFailedFounderLetsAnotherFound: when the founder's node cannot found
// the swarm, a node that waited for it is asked to.
func TestAFailedFounderLetsAnotherFound(t *testing.T) {
	h, _, founder, other := founderAndOther(t)

	o := machineNode(t, h, other, "10.0.0.12")
	f := machineNode(t, h, founder, "10.0.0.11")
	asksToFound(t, f, "10.0.0.11", "the founder")
	noCommand(t, o)
	f.reportSwarm(&cloudmlv1.ReportSwarmRequest{Error: "init swarm: no space left on device"})
	asksToFound(t, o, "10.0.0.12", "after the founder failed")
}

// TestADeletedFounderLetsAnotherFound: a founder machine deleted before
// its agent registered (its deadline, a scale down) stops the wait at the
// next machine check.
func TestADeletedFounderLetsAnotherFound(t *testing.T) {
	h, _, founder, other := founderAndOther(t)

	o := machineNode(t, h, other, "10.0.0.12")
	noCommand(t, o)
	if _, err := h.c.machines.deleteMachines([]string{founder.ID}, provider.CauseScale, "test"); err != nil {
		t.Fatal(err)
	}
	h.c.machines.check(t.Context(), time.Now())
	asksToFound(t, o, "10.0.0.12", "after the founder was deleted")
}
