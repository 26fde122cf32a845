package agent

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// swarmFake is fakeCoord for several agents: one session per node, the
// node that sent each report, the first reporting node claims an attempt
// (as the coordinator does for swarm attempts), and stage reports.
type swarmFake struct {
	*fakeCoord
	pushes    map[string]chan *cloudmlv1.SessionResponse // by node id
	reporters []string                                   // node of each of f.reports
	claims    map[refKey]string
	stages    map[string]*cloudmlv1.ReportStageRequest // final reports, by node id
	interim   []*cloudmlv1.ReportStageRequest          // in_progress reports
}

func newSwarmFake(t *testing.T) (*swarmFake, fakeDial) {
	f := &swarmFake{
		fakeCoord: newFakeCoordWith(200 * time.Millisecond),
		pushes:    map[string]chan *cloudmlv1.SessionResponse{}, claims: map[refKey]string{},
		stages: map[string]*cloudmlv1.ReportStageRequest{},
	}
	return f, f.serve(t, f)
}

func (f *swarmFake) Session(req *cloudmlv1.SessionRequest, stream cloudmlv1.AgentService_SessionServer) error {
	id, err := f.node(stream.Context())
	if err != nil {
		return err
	}
	push := make(chan *cloudmlv1.SessionResponse, 64)
	if err := stream.Send(&cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: &cloudmlv1.SessionStarted{
		NodeId: id, HeartbeatPeriod: durationpb.New(f.period),
	}}}); err != nil {
		return err
	}
	f.mu.Lock()
	f.sessionReqs = append(f.sessionReqs, req)
	f.pushes[id] = push
	f.notify()
	f.mu.Unlock()
	for {
		select {
		case msg := <-push:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

// sendTo pushes a command down node's session, waiting for one.
func (f *swarmFake) sendTo(t *testing.T, node string, msg *cloudmlv1.SessionResponse) {
	t.Helper()
	f.wait(t, "a session of "+node, func() bool { return f.pushes[node] != nil })
	f.mu.Lock()
	push := f.pushes[node]
	f.mu.Unlock()
	push <- msg
}

func (f *swarmFake) ReportTask(ctx context.Context, req *cloudmlv1.ReportTaskRequest) (*cloudmlv1.ReportTaskResponse, error) {
	id, err := f.node(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := keyOf(req.GetRef())
	if owner, ok := f.claims[key]; ok && owner != id {
		return nil, status.Errorf(codes.FailedPrecondition, "attempt claimed by %s", owner)
	}
	f.claims[key] = id
	f.reports = append(f.reports, proto.Clone(req).(*cloudmlv1.ReportTaskRequest))
	f.reporters = append(f.reporters, id)
	f.notify()
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (f *swarmFake) ReportStage(ctx context.Context, req *cloudmlv1.ReportStageRequest) (*cloudmlv1.ReportStageResponse, error) {
	id, err := f.node(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetInProgress() {
		f.interim = append(f.interim, proto.Clone(req).(*cloudmlv1.ReportStageRequest))
	} else {
		f.stages[id] = proto.Clone(req).(*cloudmlv1.ReportStageRequest)
	}
	f.notify()
	return &cloudmlv1.ReportStageResponse{}, nil
}

// reportsOf returns the states and reporting nodes of an attempt.
func (f *swarmFake) reportsOf(ref *cloudmlv1.TaskRef) (states []cloudmlv1.TaskState, nodes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.reports {
		if keyOf(r.GetRef()) == keyOf(ref) {
			states = append(states, r.GetState())
			nodes = append(nodes, f.reporters[i])
		}
	}
	return states, nodes
}

func (f *swarmFake) ReportSwarm(ctx context.Context, _ *cloudmlv1.ReportSwarmRequest) (*cloudmlv1.ReportSwarmResponse, error) {
	if _, err := f.node(ctx); err != nil {
		return nil, err
	}
	return &cloudmlv1.ReportSwarmResponse{}, nil
}
