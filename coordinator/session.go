package coordinator

import (
	"sync"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// sessionBuffer is how many commands may queue for a slow agent before its
// session is closed (the agent reconnects and gets its assignments again).
const sessionBuffer = 1024

// session is one open AgentService.Session stream. Pushes never block: the
// scheduler must not wait on a slow stream.
type session struct {
	nodeID string
	ch     chan *cloudmlv1.SessionResponse
	done   chan struct{} // closed to end the stream
	once   sync.Once
	reason string // why done was closed; written before close
}

func newSession(nodeID string) *session {
	return &session{
		nodeID: nodeID,
		ch:     make(chan *cloudmlv1.SessionResponse, sessionBuffer),
		done:   make(chan struct{}),
	}
}

// push queues msg; a full buffer closes the session instead of blocking.
func (s *session) push(msg *cloudmlv1.SessionResponse) {
	select {
	case s.ch <- msg:
	default:
		s.close("session buffer full; reconnect to receive assignments again")
	}
}

// close ends the session once, recording why.
func (s *session) close(reason string) {
	s.once.Do(func() {
		s.reason = reason
		close(s.done)
	})
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
