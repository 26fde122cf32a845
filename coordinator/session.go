package coordinator

import (
	"sync"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stateLock is c.mu. Commands for agents made while it is held (send)
// are handed to the dispatcher as it is released, stamped with the last
// commit queued by then: each goes out once every change made before it,
// its own included, is durable (commit, then act), and the sessions that
// send them never take c.mu.
type stateLock struct {
	sync.Mutex
	release func() // runs just before the mutex is unlocked
}

// Unlock hands what was sent under the lock to the dispatcher, then
// unlocks.
func (l *stateLock) Unlock() {
	if l.release != nil {
		l.release()
	}
	l.Mutex.Unlock()
}

// send queues msg for the node's session. It goes out when c.mu is
// released, after the commit of every change queued by then. Callers hold
// c.mu.
func (c *Coordinator) send(node string, msg *cloudmlv1.SessionResponse) {
	c.outbox = append(c.outbox, dispatch.Message{Node: node, Msg: msg})
}

// flushOutbox hands the commands sent under c.mu to the dispatcher with
// the commit they wait for; c.mu's release runs it. Pushed under c.mu, in
// the order of its holds, so a node gets its commands in the order they
// were made, and a session opened in a hold gets that hold's commands.
func (c *Coordinator) flushOutbox() {
	if len(c.outbox) == 0 {
		return
	}
	c.disp.Send(c.q.last(), c.outbox)
	c.outbox = nil
}

func startedMsg(nodeID string, period *cloudmlv1.SessionStarted) *cloudmlv1.SessionResponse {
	period.NodeId = nodeID
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: period}}
}

func cancelMsg(r attemptRef, reason string) *cloudmlv1.SessionResponse {
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Cancel{
		Cancel: &cloudmlv1.Cancel{Ref: r.proto(), Reason: reason},
	}}
}

// assignmentMsg is everything the agent needs to run attempt a of job j.
func assignmentMsg(j *jobEntry, r attemptRef) *cloudmlv1.SessionResponse {
	spec := j.spec
	t := j.tasks[r.task]
	return &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Assignment{
		Assignment: &cloudmlv1.Assignment{
			Ref:       r.proto(),
			TaskCount: j.rec.TaskCount,
			Params:    t.Params,
			Command:   spec.GetCommand(),
			Env:       spec.GetEnv(),
			Code:      spec.GetCode(),
			Data:      spec.GetData(),
			Output:    j.rec.Output,
			Timeout:   spec.GetTimeout(),
			Image:     spec.GetImage(),
			Resources: spec.GetResources(),
		},
	}}
}
