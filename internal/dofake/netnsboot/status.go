package netnsboot

import "net/netip"

// Machine is what a booted droplet's machine is doing.
type Machine struct {
	// DropletID and Name are the droplet's.
	DropletID int
	Name      string
	// Node is the pool node it runs on (an index of Cluster().Nodes()),
	// DockerHost that node's daemon.
	Node       int
	DockerHost string
	// Private and Public are its addresses.
	Private, Public netip.Addr
	// CloudInit is "pending", "running", "done" or "failed";
	// CloudInitError says why it failed.
	CloudInit      string
	CloudInitError error
	// Console is the last lines of cloud-init's output.
	Console []string
	// Units are the units it started, by name.
	Units map[string]Unit
}

// Unit is a started unit's state.
type Unit struct {
	// State is "active", "activating" (waiting to restart), "inactive" or
	// "failed".
	State string
	// Starts counts its main process's starts; LastExit says how the last
	// one ended ("exit status 3").
	Starts   int
	LastExit string
	// Journal is the last lines of its output.
	Journal []string
}

// Machine returns the machine of droplet id, if it is booted.
func (b *Booter) Machine(id int) (Machine, bool) {
	b.mu.Lock()
	m := b.machines[id]
	b.mu.Unlock()
	if m == nil {
		return Machine{}, false
	}
	out := Machine{
		DropletID: m.id, Name: m.name, Node: m.node, DockerHost: m.dockerHost,
		Private: m.private, Public: m.public.Addr(), Console: m.ciOut.Tail(), Units: map[string]Unit{},
	}
	m.mu.Lock()
	out.CloudInit, out.CloudInitError = m.ciState, m.ciErr
	units := map[string]*service{}
	for name, s := range m.units {
		units[name] = s
	}
	m.mu.Unlock()
	for name, s := range units {
		st, starts, last := s.status()
		out.Units[name] = Unit{State: st, Starts: starts, LastExit: last, Journal: s.out.Tail()}
	}
	return out, true
}
