package coordinator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeAgent is a scripted agent speaking AgentService.
type fakeAgent struct {
	t      *testing.T
	h      *harness
	conn   *grpc.ClientConn
	client cloudmlv1.AgentServiceClient
	id     string
	cred   *tls.Certificate // the node certificate and key

	started     *cloudmlv1.SessionStarted
	assignments chan *cloudmlv1.Assignment
	cancels     chan *cloudmlv1.Cancel
	others      chan *cloudmlv1.SessionResponse // swarm and staging commands
	marks       chan string                     // barrier marks (see barrier), in order
	barriers    int                             // marks pushed so far
	ended       chan struct{}
	stopSession context.CancelFunc
}

// newAgent registers a node with the given slots.
func newAgent(t *testing.T, h *harness, slots int32) *fakeAgent {
	t.Helper()
	return newAgentWith(t, h, &cloudmlv1.RegisterRequest{Hostname: "host", Slots: slots, Runtime: "process"})
}

// newAgentWith registers a node described by req with a fresh join token
// and a CSR (both filled in), as the agent does.
func newAgentWith(t *testing.T, h *harness, req *cloudmlv1.RegisterRequest) *fakeAgent {
	t.Helper()
	tok, err := h.c.MintToken("test", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	req.JoinToken = tok
	id, pair, err := registerNode(t, h, req)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return rejoin(t, h, id, pair)
}

// registerNode registers req on a connection without a client
// certificate, as an agent does, and returns the node id and certificate.
func registerNode(t *testing.T, h *harness, req *cloudmlv1.RegisterRequest) (string, *tls.Certificate, error) {
	t.Helper()
	conn := h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), nil)))
	defer conn.Close()
	return testutil.RegisterNode(t, conn, req)
}

// rejoin is an agent process that restarted with a saved certificate.
func rejoin(t *testing.T, h *harness, id string, cred *tls.Certificate) *fakeAgent {
	a := &fakeAgent{t: t, h: h, id: id, cred: cred}
	a.conn = h.dialWith(credentials.NewTLS(pki.ClientTLS(h.caPool(), func() *tls.Certificate { return cred })))
	t.Cleanup(func() { a.close() })
	a.client = cloudmlv1.NewAgentServiceClient(a.conn)
	return a
}

// creds is a no-op: the connection carries the node certificate.
func (a *fakeAgent) creds() grpc.CallOption { return grpc.EmptyCallOption{} }

// open opens a session, reads SessionStarted, then collects commands.
func (a *fakeAgent) open(running ...*cloudmlv1.TaskRef) {
	a.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := a.client.Session(ctx, &cloudmlv1.SessionRequest{Running: running}, a.creds())
	if err != nil {
		cancel()
		a.t.Fatalf("Session: %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		a.t.Fatalf("Session first message: %v", err)
	}
	if first.GetStarted() == nil {
		cancel()
		a.t.Fatalf("first session message is %v, want started", first)
	}
	a.started = first.GetStarted()
	assignments := make(chan *cloudmlv1.Assignment, 100)
	cancels := make(chan *cloudmlv1.Cancel, 100)
	others := make(chan *cloudmlv1.SessionResponse, 100)
	marks := make(chan string, 100)
	ended := make(chan struct{})
	a.assignments, a.cancels, a.others, a.marks, a.ended, a.stopSession = assignments, cancels, others, marks, ended, cancel
	id := a.id
	go func() {
		defer close(ended)
		for {
			msg, err := stream.Recv()
			if err != nil {
				if err != io.EOF {
					a.t.Logf("agent %s session ended: %v", id, err)
				}
				return
			}
			switch m := msg.GetCommand().(type) {
			case *cloudmlv1.SessionResponse_Assignment:
				assignments <- m.Assignment
			case *cloudmlv1.SessionResponse_Cancel:
				cancels <- m.Cancel
			case *cloudmlv1.SessionResponse_Started: // only barrier marks come after the first
				marks <- m.Started.GetNodeId()
			default:
				others <- msg
			}
		}
	}()
}

// closeSession ends the session from the agent side.
func (a *fakeAgent) closeSession() {
	if a.stopSession != nil {
		a.stopSession()
		<-a.ended
		a.stopSession = nil
	}
}

func (a *fakeAgent) close() {
	a.closeSession()
	a.conn.Close()
}

// next waits for the next assignment.
func (a *fakeAgent) next() *cloudmlv1.Assignment {
	a.t.Helper()
	select {
	case as := <-a.assignments:
		return as
	case <-time.After(15 * time.Second):
		a.t.Fatalf("agent %s: no assignment", a.id)
		return nil
	}
}

// nextCancel waits for the next cancel.
func (a *fakeAgent) nextCancel() *cloudmlv1.Cancel {
	a.t.Helper()
	select {
	case c := <-a.cancels:
		return c
	case <-time.After(15 * time.Second):
		a.t.Fatalf("agent %s: no cancel", a.id)
		return nil
	}
}

// nextOther waits for the next swarm or staging command.
func (a *fakeAgent) nextOther() *cloudmlv1.SessionResponse {
	a.t.Helper()
	select {
	case m := <-a.others:
		return m
	case <-time.After(15 * time.Second):
		a.t.Fatalf("agent %s: no swarm or staging command", a.id)
		return nil
	}
}

// barrier returns once the coordinator ran a scheduling pass and this
// agent received every command pushed to its session before the pass
// ended. Every push happens under the coordinator's lock, which the pass
// holds, and a session delivers in order, so a mark pushed after the pass
// arrives after all of them. The mark is a SessionStarted, which the
// coordinator sends only as a session's first message.
func (a *fakeAgent) barrier() {
	a.t.Helper()
	c := a.h.c
	c.schedule(time.Now())
	a.barriers++
	mark := fmt.Sprintf("barrier-%d", a.barriers)
	c.mu.Lock()
	if n := c.nodes[a.id]; n == nil || !n.session.Connected() {
		c.mu.Unlock()
		a.t.Fatalf("agent %s: no open session to put a barrier in", a.id)
	}
	c.send(a.id, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: &cloudmlv1.SessionStarted{NodeId: mark}}})
	c.mu.Unlock()
	for {
		select {
		case got := <-a.marks:
			if got == mark {
				return
			}
		case <-a.ended:
			a.t.Fatalf("agent %s: the session ended before barrier %s", a.id, mark)
		case <-time.After(15 * time.Second):
			a.t.Fatalf("agent %s: barrier %s not received", a.id, mark)
		}
	}
}

// none asserts that the coordinator has sent no assignment this agent did
// not take yet, behind a barrier.
func (a *fakeAgent) none() {
	a.t.Helper()
	a.barrier()
	select {
	case as := <-a.assignments:
		a.t.Fatalf("agent %s: unexpected assignment %v", a.id, as.GetRef())
	default:
	}
}

func (a *fakeAgent) report(ref *cloudmlv1.TaskRef, state cloudmlv1.TaskState, exit int32, lastSeq uint64, metrics map[string]float64) error {
	_, err := a.client.ReportTask(ctxT(a.t), &cloudmlv1.ReportTaskRequest{
		Ref: ref, State: state, ExitCode: exit, LastLogSeq: lastSeq, Metrics: metrics,
		ResultsUrl: "file:///tmp/results/" + ref.GetJobId(), Time: timestamppb.Now(),
	}, a.creds())
	return err
}

func (a *fakeAgent) publish(ref *cloudmlv1.TaskRef, batches ...*cloudmlv1.LogBatch) (uint64, error) {
	resp, err := a.client.PublishLogs(ctxT(a.t), &cloudmlv1.PublishLogsRequest{Ref: ref, Batches: batches}, a.creds())
	return resp.GetAckedSeq(), err
}

func (a *fakeAgent) heartbeat() error {
	_, err := a.client.Heartbeat(ctxT(a.t), &cloudmlv1.HeartbeatRequest{}, a.creds())
	return err
}

// run plays one attempt: running, one log line, then its end.
func (a *fakeAgent) run(as *cloudmlv1.Assignment, state cloudmlv1.TaskState, exit int32, metrics map[string]float64) {
	a.t.Helper()
	ref := as.GetRef()
	if err := a.report(ref, cloudmlv1.TaskState_TASK_STATE_RUNNING, 0, 0, nil); err != nil {
		a.t.Fatalf("report running %v: %v", ref, err)
	}
	line := []byte("task " + string(rune('0'+ref.GetTaskIndex()%10)) + " says hi\n")
	if _, err := a.publish(ref, &cloudmlv1.LogBatch{Seq: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: line}); err != nil {
		a.t.Fatalf("publish %v: %v", ref, err)
	}
	if err := a.report(ref, state, exit, 1, metrics); err != nil {
		a.t.Fatalf("report %v %v: %v", ref, state, err)
	}
}

// newAgentWithToken registers a node claiming slots with a given token.
func newAgentWithToken(t *testing.T, h *harness, token string, slots int32) *fakeAgent {
	t.Helper()
	id, pair, err := registerNode(t, h, &cloudmlv1.RegisterRequest{JoinToken: token, Hostname: "host", Slots: slots, Runtime: "process"})
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	return rejoin(t, h, id, pair)
}
