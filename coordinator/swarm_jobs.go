package coordinator

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Container jobs (a spec with an image) run as swarm services: Docker Swarm
// places them, CloudML owns their identity. Before the first service of a
// job is created, every swarm node stages the job's code and data
// (StageJob), so whichever node swarm picks has them. Then each attempt is
// sent to the manager's agent, which creates one service for it; the node
// the service lands on claims the attempt with its first report.

// CloudML keeps up to swarmQueueMin slots' worth of tasks in services at
// once, or swarmQueueFactor times the swarm's slots if that is more: swarm's
// own resource reservations hold the surplus pending and start it the moment
// a task ends, without waiting for the ended attempt's upload and report to
// reach the coordinator. Creating a service while tasks run also costs the
// run: every service create or remove is a swarm store write, and each
// write restarts the swarm scheduler's debounce, which delays the placement
// of the next task. With services made one per ended task, the time from a
// container's exit to the next container on that node was ~360 ms against
// ~280 ms for services created up front (bench a), so a job of up to
// swarmQueueMin tasks gets all of its services at once.
const (
	swarmQueueFactor = 2
	swarmQueueMin    = 256
)

// serviceRemovalBatch is how many ended swarm attempts of a running job
// wait before their services are removed together (see swarmQueueMin for
// why not one by one); the rest go when the job ends.
const serviceRemovalBatch = 64

// stagePending marks a StageJob sent and not yet reported.
const stagePending = "\x00pending"

// ReportStage records that a node staged a container job's inputs.
func (s *agentServer) ReportStage(ctx context.Context, req *cloudmlv1.ReportStageRequest) (*cloudmlv1.ReportStageResponse, error) {
	id, err := nodeIDFrom(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	c := s.c
	c.mu.Lock()
	j := c.jobs[req.GetJobId()]
	staging := j != nil && j.staging != nil
	switch {
	case staging && req.GetInProgress():
		// Progress only, while the node has not finished (a late interim
		// report never undoes the final one).
		if j.staging[id] == stagePending {
			j.stageBytes[id] = req.GetBytesDownloaded()
		}
	case staging:
		j.staging[id] = req.GetError()
		j.stageBytes[id] = req.GetBytesDownloaded()
	}
	c.mu.Unlock()
	if req.GetInProgress() {
		return &cloudmlv1.ReportStageResponse{}, nil
	}
	if req.GetError() != "" {
		c.log.Warn("staging failed", "node_id", id, "job_id", req.GetJobId(), "error", req.GetError())
	}
	c.poke()
	return &cloudmlv1.ReportStageResponse{}, nil
}

// swarmPool is the swarm's capacity in one scheduling pass.
type swarmPool struct {
	manager  *nodeEntry
	why      string // why nothing can go to the swarm now
	nodes    []*nodeEntry
	slots    int32
	maxSlots int32 // of the largest node
	used     int32
}

// swarmPool collects the connected swarm nodes whose membership their
// agents reported since this coordinator started. Callers hold c.mu.
func (c *Coordinator) swarmPool() *swarmPool {
	p := &swarmPool{}
	p.manager, p.why = c.swarmManager()
	for _, n := range c.byID {
		if n.rec.SwarmNodeID != "" && c.swarm.reported[n.rec.ID] && n.session.Connected() && n.rec.State == cloudmlv1.NodeState_NODE_STATE_READY {
			p.nodes = append(p.nodes, n)
			p.slots += n.rec.Slots
			p.maxSlots = max(p.maxSlots, n.rec.Slots)
		}
	}
	c.eachActive(func(_ *jobEntry, a *store.Attempt) {
		if a.Swarm {
			p.used += a.Slots
		}
	})
	return p
}

// stageState sends StageJob to swarm nodes that have not staged j and
// returns how many are still staging, how many staged, and the first
// failure. A node whose staging failed is asked again after a backoff
// (restageAt): while others staged, its failure is its own (a full
// disk, a daemon that went away), not the job's. Callers hold c.mu.
func (c *Coordinator) stageState(j *jobEntry, p *swarmPool, now time.Time) (pending, staged int, failed string) {
	if j.staging == nil {
		j.staging, j.stageBytes = map[string]string{}, map[string]int64{}
	}
	image := j.spec.GetImage()
	imageID := ""
	if info, ok := c.images.Lookup(image); ok && image != "" {
		imageID = info.ID // a pushed copy: nodes fetch it even if their own differs
	}
	for _, n := range p.nodes {
		id := n.rec.ID
		st, sent := j.staging[id]
		if sent && st != "" && st != stagePending && j.restageAt(id, now) {
			delete(j.staging, id)
			sent = false
		}
		switch {
		case !sent:
			j.staging[id] = stagePending
			c.send(id, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_StageJob{StageJob: &cloudmlv1.StageJob{
				JobId: j.rec.ID, Code: j.spec.GetCode(), Data: j.spec.GetData(), Image: image, ImageId: imageID,
			}}})
			if !j.restaging(id) {
				pending++
			}
		case st == stagePending:
			if !j.restaging(id) {
				pending++
			}
		case st == "":
			staged++
		case failed == "":
			failed = fmt.Sprintf("staging on %s failed: %s", id, st)
		}
	}
	return pending, staged, failed
}

// placeSwarm decides for one pending task of a container job: it returns
// the reason it waits, or assigns an attempt to the swarm. Callers hold c.mu.
func (c *Coordinator) placeSwarm(ch *changes, j *jobEntry, t *store.Task, p *swarmPool, need int32, now time.Time) (why string, a *store.Attempt) {
	if p.why != "" {
		return p.why, nil
	}
	if len(p.nodes) == 0 {
		return "no swarm node is connected", nil
	}
	if need > p.maxSlots {
		return fmt.Sprintf("needs %d CPUs; the largest swarm node has %d slots", need, p.maxSlots), nil
	}
	pending, staged, failed := c.stageState(j, p, now)
	switch {
	case failed != "" && staged == 0 && pending == 0:
		// No node could stage it: the job's inputs are at fault.
		t.State = cloudmlv1.TaskState_TASK_STATE_FAILED
		t.Reason = failed
		ch.task(j, t)
		ch.updateJobState(j, now)
		return "", nil
	case pending > 0 || staged == 0:
		return fmt.Sprintf("staging code and data on %d of %d swarm nodes", pending, len(p.nodes)), nil
	case j.heldBack(t.Index, now) > 0:
		return fmt.Sprintf("placed again in %s", j.heldBack(t.Index, now).Round(time.Second)), nil
	case p.used+need > max(swarmQueueFactor*p.slots, swarmQueueMin):
		return fmt.Sprintf("swarm busy (%d slots' worth of tasks queued or running on %d nodes with %d slots)", p.used, len(p.nodes), p.slots), nil
	}
	p.used += need
	a = c.assign(ch, j, t, "", need, now)
	a.Swarm, a.Manager = true, p.manager.rec.ID
	return "", a
}

// swarmAssignmentMsg is an Assignment asking the manager to create a
// service, kept off the swarm nodes known to be down or that have not
// staged its job. Callers hold c.mu.
func (c *Coordinator) swarmAssignmentMsg(j *jobEntry, r attemptRef) *cloudmlv1.SessionResponse {
	msg := assignmentMsg(j, r)
	as := msg.GetAssignment()
	as.SwarmService = true
	for _, n := range c.byID {
		st, sent := j.staging[n.rec.ID]
		unstaged := !sent || st != ""
		if n.rec.SwarmNodeID != "" && (n.rec.State != cloudmlv1.NodeState_NODE_STATE_READY || unstaged) {
			as.AvoidSwarmNodes = append(as.AvoidSwarmNodes, n.rec.SwarmNodeID)
		}
	}
	return msg
}

// claimable reports whether node may report attempt a: its own, or a swarm
// attempt nobody claimed yet.
func (c *Coordinator) claimable(a *store.Attempt, node string) bool {
	if a.NodeID == node {
		return true
	}
	// An unclaimed swarm attempt runs where swarm placed it, on a node in
	// the swarm; a node outside it cannot have it.
	n := c.nodes[node]
	return a.Swarm && a.NodeID == "" && n != nil && n.rec.SwarmNodeID != "" && !n.rec.Removed
}

// stopAttempt tells the attempt's node, and for a swarm attempt its
// manager (which removes the service), to stop it. Callers hold c.mu.
func (c *Coordinator) stopAttempt(r attemptRef, a *store.Attempt, reason string) {
	targets := []string{a.NodeID}
	if a.Swarm && a.Manager != a.NodeID {
		targets = append(targets, a.Manager)
	}
	for _, id := range targets {
		if id != "" {
			c.send(id, cancelMsg(r, reason)) // dropped if the node has no session
		}
	}
}

// serviceEnded queues the removal of an ended swarm attempt's service: in
// batches of serviceRemovalBatch while the job runs, and every service of
// the job once it is over. Callers hold c.mu, after the job's state was
// updated.
func (c *Coordinator) serviceEnded(j *jobEntry, r attemptRef, a *store.Attempt) {
	if !a.Swarm {
		return
	}
	if c.removeJobServices(j) {
		return
	}
	j.endedServices = append(j.endedServices, r)
	if len(j.endedServices) < serviceRemovalBatch {
		return
	}
	if j.removedServices == nil {
		j.removedServices = map[attemptRef]bool{}
	}
	for _, e := range j.endedServices {
		c.removeService(e, j.attempt(e.task, e.attempt))
		j.removedServices[e] = true
	}
	j.endedServices = nil
}

// removeJobServices removes every service of j, if j is over (final, with
// no attempt still active), and reports whether it was. Callers hold c.mu.
func (c *Coordinator) removeJobServices(j *jobEntry) bool {
	if !j.final() || j.activeAttempts() > 0 {
		return false
	}
	for _, as := range j.attempts {
		for _, a := range as {
			if a != nil && a.Swarm && !j.removedServices[refOf(a)] {
				c.removeService(refOf(a), a)
			}
		}
	}
	j.endedServices, j.removedServices = nil, nil
	return true
}

// removeService asks the manager to remove an ended swarm attempt's service.
// Callers hold c.mu.
func (c *Coordinator) removeService(r attemptRef, a *store.Attempt) {
	if !a.Swarm {
		return
	}
	c.send(a.Manager, cancelMsg(r, "attempt ended; removing its service"))
}
