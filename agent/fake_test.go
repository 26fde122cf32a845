package agent

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/auth"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeCoord is an in-process AgentService: it registers nodes, checks the
// bearer credential, records reports and logs (acknowledging the highest
// contiguous batch, like the real store) and pushes commands.
type fakeCoord struct {
	cloudmlv1.UnimplementedAgentServiceServer
	token  string
	period time.Duration

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every change
	creds       map[string]string
	registers   int
	sessionReqs []*cloudmlv1.SessionRequest
	push        chan *cloudmlv1.SessionResponse // the open session's, nil if none
	endSession  chan struct{}
	heartbeats  int
	reports     []*cloudmlv1.ReportTaskRequest
	logs        map[refKey][]*cloudmlv1.LogBatch
	dupes       int
	publishes   int
	// failPublish, when set, is asked after a call is stored whether to
	// answer it with an error instead (a lost response).
	failPublish func(call int) bool
	// rejectLogs, when set, answers every PublishLogs FAILED_PRECONDITION.
	rejectLogs bool
	// rejectReport, when set, answers matching reports FAILED_PRECONDITION.
	rejectReport func(r *cloudmlv1.ReportTaskRequest) bool
}

func newFakeCoord(t *testing.T) (*fakeCoord, []grpc.DialOption) {
	f := &fakeCoord{
		token: "good-token", period: 50 * time.Millisecond,
		changed: make(chan struct{}), creds: map[string]string{}, logs: map[refKey][]*cloudmlv1.LogBatch{},
	}
	return f, testutil.ServeGRPC(t, func(s *grpc.Server) { cloudmlv1.RegisterAgentServiceServer(s, f) })
}

// notify wakes waiters; f.mu must be held.
func (f *fakeCoord) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// wait polls cond (called with f.mu held) until it holds or 20s pass.
func (f *fakeCoord) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		f.mu.Lock()
		ok, ch := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (f *fakeCoord) node(ctx context.Context) (string, error) {
	cred, ok := auth.FromIncoming(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	id, known := f.creds[cred]
	if !ok || !known {
		return "", status.Error(codes.Unauthenticated, "unknown node credential")
	}
	return id, nil
}

func (f *fakeCoord) Register(ctx context.Context, req *cloudmlv1.RegisterRequest) (*cloudmlv1.RegisterResponse, error) {
	if req.GetBootstrapToken() != f.token {
		return nil, status.Error(codes.Unauthenticated, "bad bootstrap token")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers++
	id := fmt.Sprintf("node-%d", f.registers)
	cred := "cred-" + id
	f.creds[cred] = id
	f.notify()
	return &cloudmlv1.RegisterResponse{NodeId: id, NodeCredential: cred}, nil
}

func (f *fakeCoord) Session(req *cloudmlv1.SessionRequest, stream cloudmlv1.AgentService_SessionServer) error {
	id, err := f.node(stream.Context())
	if err != nil {
		return err
	}
	push, end := make(chan *cloudmlv1.SessionResponse, 16), make(chan struct{})
	if err := stream.Send(&cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: &cloudmlv1.SessionStarted{
		NodeId: id, HeartbeatPeriod: durationpb.New(f.period),
	}}}); err != nil {
		return err
	}
	f.mu.Lock()
	f.sessionReqs = append(f.sessionReqs, req)
	f.push, f.endSession = push, end
	f.notify()
	f.mu.Unlock()
	for {
		select {
		case msg := <-push:
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-end:
			return status.Error(codes.Unavailable, "session closed by the test")
		case <-stream.Context().Done():
			return nil
		}
	}
}

// send pushes a command down the current session, waiting for one.
func (f *fakeCoord) send(t *testing.T, msg *cloudmlv1.SessionResponse) {
	t.Helper()
	f.wait(t, "an open session", func() bool { return f.push != nil })
	f.mu.Lock()
	push := f.push
	f.mu.Unlock()
	push <- msg
}

func (f *fakeCoord) assign(t *testing.T, asg *cloudmlv1.Assignment) {
	t.Helper()
	f.send(t, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Assignment{Assignment: asg}})
}

// dropSession ends the open session from the server side.
func (f *fakeCoord) dropSession() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.endSession != nil {
		close(f.endSession)
		f.push, f.endSession = nil, nil
	}
}

func (f *fakeCoord) Heartbeat(ctx context.Context, _ *cloudmlv1.HeartbeatRequest) (*cloudmlv1.HeartbeatResponse, error) {
	if _, err := f.node(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heartbeats++
	f.notify()
	return &cloudmlv1.HeartbeatResponse{Period: durationpb.New(f.period)}, nil
}

func (f *fakeCoord) ReportTask(ctx context.Context, req *cloudmlv1.ReportTaskRequest) (*cloudmlv1.ReportTaskResponse, error) {
	if _, err := f.node(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rejectReport != nil && f.rejectReport(req) {
		f.notify()
		return nil, status.Error(codes.FailedPrecondition, "attempt superseded")
	}
	f.reports = append(f.reports, proto.Clone(req).(*cloudmlv1.ReportTaskRequest))
	f.notify()
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (f *fakeCoord) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
	if _, err := f.node(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishes++
	if f.rejectLogs {
		f.notify()
		return nil, status.Error(codes.FailedPrecondition, "attempt superseded")
	}
	key := keyOf(req.GetRef())
	for _, b := range req.GetBatches() {
		have := uint64(len(f.logs[key]))
		switch {
		case b.GetSeq() <= have:
			f.dupes++
		case b.GetSeq() == have+1:
			f.logs[key] = append(f.logs[key], b)
		}
	}
	f.notify()
	if f.failPublish != nil && f.failPublish(f.publishes) {
		return nil, status.Error(codes.Unavailable, "response lost")
	}
	return &cloudmlv1.PublishLogsResponse{AckedSeq: uint64(len(f.logs[key]))}, nil
}

// final returns the attempt's end report, if any; f.mu must be held.
func (f *fakeCoord) final(ref *cloudmlv1.TaskRef) *cloudmlv1.ReportTaskRequest {
	for _, r := range f.reports {
		if keyOf(r.GetRef()) == keyOf(ref) && isFinal(r.GetState()) {
			return r
		}
	}
	return nil
}

func isFinal(s cloudmlv1.TaskState) bool {
	return s == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || s == cloudmlv1.TaskState_TASK_STATE_FAILED ||
		s == cloudmlv1.TaskState_TASK_STATE_CANCELLED
}

// waitFinal waits for the attempt's end report.
func (f *fakeCoord) waitFinal(t *testing.T, ref *cloudmlv1.TaskRef) *cloudmlv1.ReportTaskRequest {
	t.Helper()
	f.wait(t, "the end report of "+ref.String(), func() bool { return f.final(ref) != nil })
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.final(ref)
}

// states lists the states reported for an attempt, in order.
func (f *fakeCoord) states(ref *cloudmlv1.TaskRef) []cloudmlv1.TaskState {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []cloudmlv1.TaskState
	for _, r := range f.reports {
		if keyOf(r.GetRef()) == keyOf(ref) {
			s = append(s, r.GetState())
		}
	}
	return s
}

// logText returns an attempt's stored output per stream.
func (f *fakeCoord) logText(ref *cloudmlv1.TaskRef) (stdout, stderr string, batches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out, errb []byte
	for _, b := range f.logs[keyOf(ref)] {
		if b.GetStream() == cloudmlv1.LogStream_LOG_STREAM_STDERR {
			errb = append(errb, b.GetData()...)
		} else {
			out = append(out, b.GetData()...)
		}
	}
	return string(out), string(errb), len(f.logs[keyOf(ref)])
}
