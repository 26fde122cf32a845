package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudml/cloudml/coordinator/placement"
	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// scheduleTick is the scheduler's fallback period between triggers.
const scheduleTick = time.Second

// schedulePause is the least time between two passes. Every attempt's end
// pokes the scheduler, and a pass looks at every node and active attempt,
// so on a busy cluster passes back to back cost a core's tenth for a task
// or two each; after a pause one pass places everything freed meanwhile.
// Swarmkit's scheduler batches its events the same way (50 ms).
const schedulePause = 5 * time.Millisecond

// runScheduler places pending tasks whenever poked (at most once per
// schedulePause), and every second.
func (c *Coordinator) runScheduler(ctx context.Context) {
	tick := time.NewTicker(scheduleTick)
	defer tick.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		}
		c.schedule(time.Now())
		pause.Reset(schedulePause)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// slotsFor is how many slots one task of spec needs (placement.SlotsFor).
func slotsFor(spec *cloudmlv1.JobSpec) int32 {
	return placement.SlotsFor(spec.GetResources().GetCpus())
}

// schedule runs one pass: FIFO over jobs by creation and tasks by index,
// each placed on the least loaded node that fits, within the job's
// parallelism. Tasks that stay pending get a reason.
func (c *Coordinator) schedule(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	var p *placement.Pool // built on the first job with pending tasks
	var sp *swarmPool     // built on the first container job
	ch := newChanges()
	type push struct {
		node  string
		j     *jobEntry
		r     attemptRef
		swarm bool
	}
	var pushes []push
	for _, j := range c.orderedJobs() {
		if j.final() || j.rec.Cancelled || j.inState(cloudmlv1.TaskState_TASK_STATE_PENDING) == 0 {
			continue
		}
		if p == nil {
			p = c.pool()
		}
		active := int32(j.activeAttempts())
		parallelism := j.spec.GetParallelism()
		need := slotsFor(j.spec)
		full := "" // why no further task of j fits this pass, once none does
		j.waiting, j.waitingFrom = "", 0
		for t := range j.pendingTasks {
			if full != "" {
				// The rest wait for the same reason: it is said once, for
				// the job, rather than written into each of them on every
				// pass (a queue of sweeps holds 100,000 pending tasks).
				j.waiting, j.waitingFrom = full, t.Index
				break
			}
			var why string
			switch {
			case j.spec.GetImage() != "":
				if parallelism > 0 && active >= parallelism {
					why = fmt.Sprintf("job parallelism %d reached", parallelism)
					full = why
					break
				}
				if sp == nil {
					sp = c.swarmPool()
				}
				var a *store.Attempt
				if why, a = c.placeSwarm(ch, j, t, sp, need, now); a != nil {
					active++
					pushes = append(pushes, push{sp.manager.rec.ID, j, refOf(a), true})
				}
			case len(c.nodes) == 0:
				why = "no nodes registered"
				full = why
			case p.Len() == 0:
				why = fmt.Sprintf("none of the %d registered nodes is connected", len(c.nodes))
				full = why
			case parallelism > 0 && active >= parallelism:
				why = fmt.Sprintf("job parallelism %d reached", parallelism)
				full = why
			case need > p.MaxSlots():
				why = fmt.Sprintf("needs %d slots; the largest node has %d", need, p.MaxSlots())
				full = why
			default:
				node, ok := p.Place(need)
				if !ok {
					why = p.Full(need)
					full = why
					break
				}
				active++
				a := c.assign(ch, j, t, node, need, now)
				pushes = append(pushes, push{node, j, refOf(a), false})
			}
			if why == "" {
				continue
			}
			// Derived again on every pass, so kept in memory only: a pass
			// over a large pending sweep writes nothing.
			t.Reason = pendingReason(t, why)
		}
	}
	if err := c.commit(ch); err != nil {
		c.log.Error("store assignments failed", "error", err)
		return
	}
	for _, ps := range pushes {
		c.log.Debug("attempt assigned", "attempt", ps.r.String(), "node_id", ps.node)
		if ps.swarm {
			c.send(ps.node, c.swarmAssignmentMsg(ps.j, ps.r))
			continue
		}
		c.send(ps.node, assignmentMsg(ps.j, ps.r))
	}
}

// pool is the pass's placement pool: the connected READY nodes and
// their free slots, from what each job's active attempts hold on each
// node (jobEntry.use), so a pass costs the same however many attempts are
// active. Callers hold c.mu.
func (c *Coordinator) pool() *placement.Pool {
	var uses []map[string]nodeUse // of the jobs with active attempts
	for _, j := range c.jobOrder {
		if u := j.use(); len(u) > 0 {
			uses = append(uses, u)
		}
	}
	if checkKept {
		c.usedSlots() // checks the uses against the attempts (tests)
	}
	nodes := make([]placement.Node, 0, len(c.byID))
	for _, n := range c.byID {
		if n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY || !n.session.Connected() {
			continue
		}
		free := n.rec.Slots
		for _, u := range uses {
			free -= u[n.rec.ID].slots
		}
		nodes = append(nodes, placement.Node{ID: n.rec.ID, Slots: n.rec.Slots, Free: free})
	}
	return placement.NewPool(nodes)
}

// assign creates the task's next attempt on node. Callers hold c.mu.
func (c *Coordinator) assign(ch *changes, j *jobEntry, t *store.Task, node string, slots int32, now time.Time) *store.Attempt {
	t.Attempt++
	t.State = cloudmlv1.TaskState_TASK_STATE_ASSIGNED
	t.Reason = ""
	t.Note = ""
	a := &store.Attempt{
		JobID:      j.rec.ID,
		Task:       t.Index,
		Attempt:    t.Attempt,
		NodeID:     node,
		Slots:      slots,
		State:      cloudmlv1.TaskState_TASK_STATE_ASSIGNED,
		AssignTime: now,
	}
	list := j.attempts[t.Index]
	for len(list) < int(a.Attempt) {
		list = append(list, nil)
	}
	list[a.Attempt-1] = a
	j.attempts[t.Index] = list
	ch.task(j, t)
	ch.attempt(a)
	return a
}
