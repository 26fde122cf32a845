package coordinator

import (
	"context"
	"fmt"
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
			c.checkNodes(time.Now())
		}
	}
}

// checkNodes marks READY nodes DOWN when their last heartbeat, or the end
// of their last session, is older than NodeDownAfter.
func (c *Coordinator) checkNodes(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := newChanges()
	for _, n := range c.nodes {
		if n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY {
			continue
		}
		silent := now.Sub(n.lastSeen) > c.cfg.NodeDownAfter
		detached := n.sess == nil && now.Sub(n.sessionEnd) > c.cfg.NodeDownAfter
		if !silent && !detached {
			continue
		}
		why := "no heartbeat"
		if detached {
			why = "no session"
		}
		c.log.Warn("node down", "node_id", n.rec.ID, "reason", why, "last_seen", n.lastSeen)
		c.markDown(ch, n, now)
	}
	if ch.storeChanges().Empty() {
		return
	}
	if err := c.commit(ch); err != nil {
		c.log.Error("store node down failed", "error", err)
	}
	c.poke()
}

// markDown marks n DOWN, closes its session and loses its active attempts.
// Callers hold c.mu.
func (c *Coordinator) markDown(ch *changes, n *nodeEntry, now time.Time) {
	n.rec.State = cloudmlv1.NodeState_NODE_STATE_DOWN
	ch.node(n.rec)
	if n.sess != nil {
		n.sess.close("node marked down: heartbeat deadline missed")
	}
	for _, j := range c.jobs {
		for i := range j.tasks {
			a := j.current(int32(i))
			if a == nil || a.NodeID != n.rec.ID || !a.Active() {
				continue
			}
			c.loseAttempt(ch, j, a, fmt.Sprintf("node %s went down during attempt %d", n.rec.ID, a.Attempt), now)
		}
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
	ch.task(t)
	ch.updateJobState(j, now)
	c.log.Info("attempt lost", "attempt", refOf(a).String(), "reason", why)
}

// commit writes ch in one transaction and wakes the jobs' log subscribers.
// Callers hold c.mu.
func (c *Coordinator) commit(ch *changes) error {
	if err := c.store.Save(ch.storeChanges()); err != nil {
		return err
	}
	for id := range ch.wake {
		c.wake(id)
	}
	return nil
}

// poke triggers a scheduling pass without blocking.
func (c *Coordinator) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// usedSlots sums the slots and attempts active on each node. Callers hold c.mu.
func (c *Coordinator) usedSlots() (slots map[string]int32, running map[string]int32) {
	slots, running = map[string]int32{}, map[string]int32{}
	for _, j := range c.jobs {
		for i := range j.tasks {
			if a := j.current(int32(i)); a != nil && a.Active() {
				slots[a.NodeID] += a.Slots
				running[a.NodeID]++
			}
		}
	}
	return slots, running
}
