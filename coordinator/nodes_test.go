package coordinator

import (
	"strings"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// silence makes the named nodes look silent for an hour, heartbeats and
// sessions alike, and runs the node check the ticker would run.
// Tests use it instead of short real-time limits, which a loaded machine
// can make any node miss.
func (h *harness) silence(ids ...string) {
	h.t.Helper()
	h.c.mu.Lock()
	for _, id := range ids {
		if h.c.nodes[id] == nil {
			h.c.mu.Unlock()
			h.t.Fatalf("no node %s", id)
		}
		h.c.live.touch(id, time.Now().Add(-time.Hour))
	}
	h.c.mu.Unlock()
	h.c.checkNodes(time.Now())
}

// TestSilentNodeGoesDown runs the real ticker: a node that never
// heartbeats is marked down and its session closed.
func TestSilentNodeGoesDown(t *testing.T) {
	h := start(t, "", func(c *Config) {
		c.HeartbeatPeriod = 50 * time.Millisecond
		c.NodeDownAfter = 200 * time.Millisecond
	})
	n := newAgent(t, h, 1)
	n.open()
	select {
	case <-n.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("the silent node's session was not closed")
	}
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := nodes.GetNodes()[0].GetState(); st != cloudmlv1.NodeState_NODE_STATE_DOWN {
		t.Errorf("state = %v, want down", st)
	}
}

func TestNodeDownReschedulesToOtherNode(t *testing.T) {
	h := start(t, "")
	n1, n2 := newAgent(t, h, 2), newAgent(t, h, 2)
	n1.open()
	n2.open()
	job := h.submit(gridSpec("down", 4))
	mine := []*cloudmlv1.Assignment{n1.next(), n1.next()}
	lost := []*cloudmlv1.Assignment{n2.next(), n2.next()}
	for _, a := range append(mine, lost...) {
		owner := n1
		if a.GetRef().GetTaskIndex()%2 == 1 {
			owner = n2
		}
		if err := owner.report(a.GetRef(), running, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	// node-2 goes down: its session is closed and its tasks wait again.
	h.silence(n2.id)
	select {
	case <-n2.ended:
	case <-time.After(15 * time.Second):
		t.Fatal("node-2's session was not closed")
	}
	waitFor(t, "node-2 tasks pending", func() bool {
		j := h.job(job.GetId())
		for _, a := range lost {
			task := j.GetTasks()[a.GetRef().GetTaskIndex()]
			want := "node node-2 went down during attempt 1; rescheduling; all 1 nodes busy (2/2 slots used)"
			if task.GetState() != pending || task.GetReason() != want {
				return false
			}
		}
		return true
	})
	nodes, err := h.cluster.ListNodes(ctxT(t), &cloudmlv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st := nodes.GetNodes()[1].GetState(); st != cloudmlv1.NodeState_NODE_STATE_DOWN {
		t.Errorf("node-2 state = %v, want down", st)
	}
	// A report from the lost attempt is refused, so node-2 would stop it.
	err = n2.report(lost[0].GetRef(), succeeded, 0, 0, nil)
	wantCode(t, err, codesFailedPrecondition)
	if !strings.Contains(err.Error(), "went down") {
		t.Errorf("stale report error %q does not say why", err)
	}

	for _, a := range mine {
		if err := n1.report(a.GetRef(), succeeded, 0, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		a := n1.next()
		if a.GetRef().GetAttempt() != 2 {
			t.Errorf("rescheduled %v, want attempt 2", a.GetRef())
		}
		n1.run(a, succeeded, 0, nil)
	}
	j := h.waitJob(job.GetId(), cloudmlv1.JobState_JOB_STATE_SUCCEEDED)
	for _, task := range j.GetTasks() {
		if task.GetNodeId() != "node-1" {
			t.Errorf("task %d ended on %s, want node-1", task.GetIndex(), task.GetNodeId())
		}
	}
}

// TestNoSessionCountsFromItsEnd: a node without a session is marked down
// NodeDownAfter after its last session ended, not after it began. A
// session that lasted longer than the deadline, then closed (an agent
// restarting), leaves the node READY until the deadline passes from the
// close.
func TestNoSessionCountsFromItsEnd(t *testing.T) {
	const deadline = 2 * time.Second
	h := start(t, "", func(c *Config) { c.NodeDownAfter = deadline })
	n := newAgent(t, h, 1)
	n.open()
	time.Sleep(deadline / 4) // the session lasts a while
	if err := n.heartbeat(); err != nil {
		t.Fatal(err)
	}
	n.closeSession()
	waitFor(t, "the coordinator to see the session closed", func() bool {
		h.c.mu.Lock()
		defer h.c.mu.Unlock()
		return !h.c.nodes[n.id].session.Connected()
	})
	h.c.checkNodes(time.Now().Add(deadline * 8 / 10))
	h.c.mu.Lock()
	st := h.c.nodes[n.id].rec.State
	h.c.mu.Unlock()
	if st != cloudmlv1.NodeState_NODE_STATE_READY {
		t.Fatalf("a node whose session closed just now is %v, want READY", st)
	}
	h.c.checkNodes(time.Now().Add(deadline * 12 / 10))
	h.c.mu.Lock()
	st = h.c.nodes[n.id].rec.State
	h.c.mu.Unlock()
	if st != cloudmlv1.NodeState_NODE_STATE_DOWN {
		t.Fatalf("a node without a session past the deadline is %v, want DOWN", st)
	}
}
