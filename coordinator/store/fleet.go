package store

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Machine is a machine the coordinator asked its provider for (a droplet,
// a local agent process), live or a tombstone: see provider.Fleet.
type Machine struct {
	// ID is the provider's id (a droplet id, "node-3").
	ID string `json:"id"`
	// Name, Pool, Size and Request are what it was made as.
	Name    string `json:"name,omitempty"`
	Pool    string `json:"pool"`
	Size    string `json:"size,omitempty"`
	Request string `json:"request,omitempty"`
	// PrivateIP and PublicIP are its addresses as last listed.
	PrivateIP string `json:"private_ip,omitempty"`
	PublicIP  string `json:"public_ip,omitempty"`
	// State is the provider's word for it as last listed (creating,
	// running, stopped, deleting).
	State string `json:"state"`
	// CreateTime is when the provider made it; BookTime when the
	// coordinator first recorded it.
	CreateTime time.Time `json:"create_time,omitzero"`
	BookTime   time.Time `json:"book_time,omitzero"`
	// NodeID is the node its agent registered as, once linked.
	NodeID string `json:"node_id,omitempty"`
	// Founder is set on the machine made to found the swarm as it boots.
	Founder bool `json:"founder,omitempty"`
	// Deleting is set once a delete was asked for.
	Deleting bool `json:"deleting,omitempty"`
	// Cause and Reason say why it is deleted or lost.
	Cause  string `json:"cause,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Lost is set when the provider stopped listing it without a delete.
	Lost bool `json:"lost,omitempty"`
	// GoneTime is when it was confirmed gone or found lost.
	GoneTime time.Time `json:"gone_time,omitzero"`
}

// MachineRequest is a create request written before the provider is
// asked, and removed once the machines it made are recorded.
type MachineRequest struct {
	// ID is the request's id, which every machine it made carries.
	ID string `json:"id"`
	// Pool, Size, Count and Slots are what was asked.
	Pool  string `json:"pool"`
	Size  string `json:"size,omitempty"`
	Count int    `json:"count"`
	Slots int    `json:"slots,omitempty"`
	// Time is when it was recorded.
	Time time.Time `json:"time"`
}

// Pool is a group of machines of one size, as the last scale set it.
type Pool struct {
	// Name is the pool's name ("default").
	Name string `json:"name"`
	// Size is its machines' (empty: the provider's default); Region the
	// provider's region when the pool was scaled, if it has one.
	Size   string `json:"size,omitempty"`
	Region string `json:"region,omitempty"`
	// Nodes is the number of machines the last scale asked for.
	Nodes int `json:"nodes"`
	// MinNodes is how many machines idle deletion keeps.
	MinNodes int `json:"min_nodes,omitempty"`
	// IdleDelete is how long a machine may run no task before it is
	// deleted (down to MinNodes); 0 means the coordinator's default,
	// negative never.
	IdleDelete time.Duration `json:"idle_delete,omitempty"`
	// UpdateTime is when it was last scaled.
	UpdateTime time.Time `json:"update_time"`
}

// Fleet is the fleet's records, as LoadFleet read them.
type Fleet struct {
	// Machines, Requests and Pools are every record, in key order.
	Machines []*Machine
	Requests []*MachineRequest
	Pools    []*Pool
}

// LoadFleet reads the machines, create requests and pools.
func (s *Store) LoadFleet() (*Fleet, error) {
	f := &Fleet{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := loadAll(tx.Bucket(bucketMachines), &f.Machines); err != nil {
			return fmt.Errorf("machines: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketRequests), &f.Requests); err != nil {
			return fmt.Errorf("machine requests: %w", err)
		}
		if err := loadAll(tx.Bucket(bucketPools), &f.Pools); err != nil {
			return fmt.Errorf("pools: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load fleet: %w", err)
	}
	return f, nil
}

func (c *Changes) fleetSize() int {
	return len(c.Machines) + len(c.MachineRequests) + len(c.Pools) + len(c.DropMachines) + len(c.DropMachineRequests) + len(c.DropPools)
}
