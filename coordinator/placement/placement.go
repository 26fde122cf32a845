// Package placement is the scheduler's policy for process tasks: how many
// slots a task needs, which node it goes to (the least loaded that fits,
// ties by id), and why a task waits when none does.
//
// It is the scheduler's own state, split off by role as swarmkit's manager
// splits its scheduler: a Pool lives for one scheduling pass and is owned
// by it, so it needs no lock. It knows nothing of jobs, sessions or the
// store. The coordinator builds a pass's Pool from the nodes that are
// ready and connected, less the slots their active attempts hold, and
// commits each placement as a job-state change under the job store's lock
// (commit, then act); swarm tasks are placed by Docker Swarm instead.
package placement

import (
	"fmt"
	"math"
)

// SlotsFor is how many slots one task asking for cpus needs:
// max(1, ceil(cpus)).
func SlotsFor(cpus float64) int32 {
	if cpus <= 1 {
		return 1
	}
	return int32(math.Min(math.Ceil(cpus), math.MaxInt32/2))
}

// Node is a node a pass may place on.
type Node struct {
	ID    string
	Slots int32 // the node's slots
	Free  int32 // its slots no active attempt holds
}

// Pool is the nodes of one pass and their free slots, less what the pass
// placed on them so far.
type Pool struct {
	nodes    []Node
	total    int32
	maxSlots int32
	// unfit is the least need no node fitted (0: none yet): slots are
	// only taken during a pass, so no larger need fits later in it, and
	// the jobs queued behind a full cluster cost a pass nothing each.
	unfit int32
}

// NewPool is a pass's pool of nodes, in the order ties go by (the
// coordinator gives them sorted by id).
func NewPool(nodes []Node) *Pool {
	p := &Pool{nodes: nodes}
	for _, n := range nodes {
		p.total += n.Slots
		p.maxSlots = max(p.maxSlots, n.Slots)
	}
	return p
}

// Len is how many nodes the pool has.
func (p *Pool) Len() int { return len(p.nodes) }

// MaxSlots is the most slots any node of the pool has.
func (p *Pool) MaxSlots() int32 { return p.maxSlots }

// Place takes need slots on the node with the most free (ties: the first),
// and returns its id; false when no node has need free.
func (p *Pool) Place(need int32) (string, bool) {
	if p.unfit > 0 && need >= p.unfit {
		return "", false
	}
	best := -1
	for i := range p.nodes {
		if p.nodes[i].Free >= need && (best < 0 || p.nodes[i].Free > p.nodes[best].Free) {
			best = i
		}
	}
	if best < 0 {
		p.unfit = need
		return "", false
	}
	p.nodes[best].Free -= need
	return p.nodes[best].ID, true
}

// used is the slots held or placed on, over every node.
func (p *Pool) used() int32 {
	u := p.total
	for _, n := range p.nodes {
		u -= max(n.Free, 0)
	}
	return u
}

// Full says why a task that needs need slots fits no node now.
func (p *Pool) Full(need int32) string {
	if need == 1 {
		return fmt.Sprintf("all %d nodes busy (%d/%d slots used)", len(p.nodes), p.used(), p.total)
	}
	return fmt.Sprintf("no node has %d free slots (%d/%d slots used on %d nodes)", need, p.used(), p.total, len(p.nodes))
}
