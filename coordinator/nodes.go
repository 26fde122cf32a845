package coordinator

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// runNodeChecker marks nodes DOWN once they miss NodeDownAfter.
func (c *Coordinator) runNodeChecker(ctx context.Context) {
	every := min(max(c.cfg.NodeDownAfter/4, 10*time.Millisecond), time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.live.changed: // a runtime report changed
		}
		c.checkNodes(time.Now())
	}
}

// checkNodes marks READY nodes DOWN when their last heartbeat, or the end
// of their last session, is older than NodeDownAfter, and applies what
// their heartbeats said of their runtimes.
func (c *Coordinator) checkNodes(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping || c.q.failure() != nil {
		return
	}
	ch := newChanges()
	for _, n := range c.nodes {
		if !n.rec.Removed {
			c.runtimeHealth(ch, n, c.live.runtimeError(n.rec.ID), now)
		}
		if n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY {
			continue
		}
		lastSeen := c.live.lastSeen(n.rec.ID)
		silent := now.Sub(lastSeen) > c.cfg.NodeDownAfter
		detached := c.detachedFor(n, now) > c.cfg.NodeDownAfter
		if !silent && !detached {
			continue
		}
		why := "no heartbeat"
		if detached {
			why = "no session"
		}
		c.log.Warn("node down", "node_id", n.rec.ID, "reason", why, "last_seen", lastSeen)
		c.markDown(ch, n, now)
	}
	c.takeBackStalled(ch, now)
	if ch.empty() {
		return
	}
	if err := c.commit(ch); err != nil {
		c.log.Error("store node down failed", "error", err)
	}
	c.poke()
}

// takeBackStalled takes back attempts whose node holds them without
// progress: sent but never reported started within StartDeadline, or
// running past their job's timeout plus EndGrace without an end. A node
// that heartbeats but never reports must not keep a task forever. The
// node is told to stop it; the task is rescheduled as for a lost node.
// Swarm attempts not yet claimed are exempt: swarm queues them, not a
// node. Callers hold c.mu.
func (c *Coordinator) takeBackStalled(ch *changes, now time.Time) {
	c.eachActive(func(j *jobEntry, a *store.Attempt) {
		if a.NodeID == "" {
			return
		}
		timeout := j.spec.GetTimeout().AsDuration()
		var why string
		switch {
		case a.State == cloudmlv1.TaskState_TASK_STATE_ASSIGNED && !a.Swarm && now.Sub(a.AssignTime) > c.cfg.StartDeadline:
			why = fmt.Sprintf("node %s did not start attempt %d within %s", a.NodeID, a.Attempt, c.cfg.StartDeadline)
		case timeout > 0 && !a.StartTime.IsZero() && now.Sub(a.StartTime) > timeout+c.cfg.EndGrace:
			why = fmt.Sprintf("node %s did not report the end of attempt %d within its timeout (%s) and %s", a.NodeID, a.Attempt, timeout, c.cfg.EndGrace)
		default:
			return
		}
		c.log.Warn("taking back a stalled attempt", "attempt", refOf(a).String(), "reason", why)
		c.stopAttempt(refOf(a), a, why)
		c.loseAttempt(ch, j, a, why, now)
	})
}

// detachedFor is how long n has had no session (dispatch.Node.Detached);
// 0 while it has one.
func (c *Coordinator) detachedFor(n *nodeEntry, now time.Time) time.Duration {
	since, detached := n.session.Detached()
	if !detached {
		return 0
	}
	return now.Sub(since)
}

// markDown marks n DOWN, closes its session and loses its active attempts.
// Callers hold c.mu.
func (c *Coordinator) markDown(ch *changes, n *nodeEntry, now time.Time) {
	n.rec.State = cloudmlv1.NodeState_NODE_STATE_DOWN
	ch.node(n.rec)
	c.disp.End(n.rec.ID, "node marked down: heartbeat deadline missed", now)
	c.loseNodeAttempts(ch, n, fmt.Sprintf("node %s went down", n.rec.ID), now)
}

// loseNodeAttempts loses every active attempt on n, and the swarm attempts
// no node claimed yet when n created them as manager or is in the swarm:
// swarm may have placed such a service on n, where with restart condition
// none it would wait forever, and the coordinator cannot tell where swarm
// placed it. They are created again, kept off n; one that was about to
// start elsewhere only starts later. Callers hold c.mu.
func (c *Coordinator) loseNodeAttempts(ch *changes, n *nodeEntry, why string, now time.Time) {
	inSwarm := n.rec.SwarmNodeID != ""
	c.eachActive(func(j *jobEntry, a *store.Attempt) {
		unclaimedHere := a.Swarm && a.NodeID == "" && (a.Manager == n.rec.ID || inSwarm)
		if a.NodeID == n.rec.ID || unclaimedHere {
			c.loseAttempt(ch, j, a, fmt.Sprintf("%s during attempt %d", why, a.Attempt), now)
		}
	})
}

// runtimeDown begins the message of a node its runtime took down.
const runtimeDown = "runtime: "

// runtimeHealth applies a heartbeat's runtime report: a node whose runtime
// (its Docker daemon) fails is DOWN with the reason and its attempts are
// rescheduled, though its session stays open; it is READY again once the
// runtime answers. Callers hold c.mu.
func (c *Coordinator) runtimeHealth(ch *changes, n *nodeEntry, runtimeErr string, now time.Time) {
	switch {
	case runtimeErr != "" && n.rec.State == cloudmlv1.NodeState_NODE_STATE_READY:
		n.rec.State = cloudmlv1.NodeState_NODE_STATE_DOWN
		n.rec.Message = runtimeDown + runtimeErr
		ch.node(n.rec)
		c.log.Warn("node runtime failed", "node_id", n.rec.ID, "error", runtimeErr)
		c.loseNodeAttempts(ch, n, fmt.Sprintf("the runtime on %s failed", n.rec.ID), now)
	case runtimeErr == "" && n.rec.State == cloudmlv1.NodeState_NODE_STATE_DOWN && n.session.Connected() && strings.HasPrefix(n.rec.Message, runtimeDown):
		n.rec.State = cloudmlv1.NodeState_NODE_STATE_READY
		n.rec.Message = ""
		ch.node(n.rec)
		c.log.Info("node runtime recovered", "node_id", n.rec.ID)
	}
}

// loseAttempt ends an attempt that its node lost. The task waits again
// (not counted against retries), or ends if its job was cancelled.
// Callers hold c.mu.
func (c *Coordinator) loseAttempt(ch *changes, j *jobEntry, a *store.Attempt, why string, now time.Time) {
	a.State = cloudmlv1.TaskState_TASK_STATE_FAILED
	a.Lost = true
	a.ExitCode = -1
	a.Message = why
	a.EndTime = now
	ch.attempt(a)
	c.removeService(refOf(a), a)
	t := j.tasks[a.Task]
	if j.rec.Cancelled {
		t.State = cloudmlv1.TaskState_TASK_STATE_CANCELLED
		t.Reason = "cancelled with its job"
		t.Note = ""
	} else {
		t.State = cloudmlv1.TaskState_TASK_STATE_PENDING
		t.Note = why + "; rescheduling"
		t.Reason = t.Note
	}
	ch.task(j, t)
	ch.updateJobState(j, now)
	c.serviceEnded(j, refOf(a), a) // removed above; at the job's end, all the others
	c.log.Info("attempt lost", "attempt", refOf(a).String(), "reason", why)
}

// commit queues ch for the next group commit (commit.go) and wakes the
// jobs' log subscribers. Its caller shows nothing of ch until it is on
// disk: RPCs through locked, sessions by waiting before they send.
// Callers hold c.mu.
func (c *Coordinator) commit(ch *changes) error {
	if ch.empty() {
		return nil
	}
	b, err := store.Encode(ch.storeChanges())
	if err != nil {
		return err
	}
	c.q.enqueue(b)
	for id := range ch.wake {
		c.logs.Wake(id)
	}
	if len(ch.nodes) > 0 && c.machines != nil {
		c.machines.changed() // a listing shows the nodes; it reads them under c.mu, held here
	}
	return nil
}

// locked runs f under c.mu, then waits until every change queued by then
// (f's, and those f saw) is on disk, so its caller shows or acknowledges
// nothing the store does not hold. It returns the store's failure if that
// never happens, else f's error.
func (c *Coordinator) locked(f func() error) error {
	seq, err := c.lockedSeq(f)
	if werr := c.q.Wait(seq); werr != nil {
		return werr
	}
	return err
}

// lockedSeq runs f under c.mu and returns the commit to wait for before
// its effects may be acknowledged (locked without the wait).
func (c *Coordinator) lockedSeq(f func() error) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := f()
	return c.q.last(), err
}

// poke triggers a scheduling pass without blocking.
func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// usedSlots sums the slots and attempts active on each node, from what
// each job keeps (jobEntry.use). Callers hold c.mu.
func (c *Coordinator) usedSlots() (slots map[string]int32, running map[string]int32) {
	slots, running = make(map[string]int32, len(c.byID)), make(map[string]int32, len(c.byID))
	for _, j := range c.jobOrder {
		for node, u := range j.use() {
			slots[node] += u.slots
			running[node] += u.attempts
		}
	}
	c.checkUse(slots, running)
	return slots, running
}

// checkKept makes what the coordinator keeps to spare itself a walk
// (each job's use of each node, the job order) be compared with that walk
// on every use, and a difference panic. The package's tests set it, so
// that every test checks the bookkeeping.
var checkKept = false

// checkUse panics, when checkKept is set, unless slots and running are
// what a walk over every active attempt sums.
func (c *Coordinator) checkUse(slots, running map[string]int32) {
	if !checkKept {
		return
	}
	wantSlots, wantRunning := map[string]int32{}, map[string]int32{}
	c.eachActive(func(_ *jobEntry, a *store.Attempt) {
		if a.NodeID != "" {
			wantSlots[a.NodeID] += a.Slots
			wantRunning[a.NodeID]++
		}
	})
	if !maps.Equal(slots, wantSlots) || !maps.Equal(running, wantRunning) {
		panic(fmt.Sprintf("the jobs keep slots %v and attempts %v on nodes; their active attempts hold %v and %v", slots, running, wantSlots, wantRunning))
	}
}

// eachActive calls f with every active attempt, by job (oldest first)
// and task, visiting only jobs and tasks that have one. f may end it.
// Callers hold c.mu.
func (c *Coordinator) eachActive(f func(j *jobEntry, a *store.Attempt)) {
	for _, j := range c.orderedJobs() {
		if j.activeAttempts() == 0 {
			continue
		}
		for _, i := range j.activeTasks() {
			if a := j.current(i); a != nil && a.Active() {
				f(j, a)
			}
		}
	}
}
