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

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeCoord is an in-process AgentService over TLS: it registers nodes
// (signing their CSRs with its own CA), knows them by their certificates,
// records reports and logs (acknowledging the highest
// contiguous batch, like the real store) and pushes commands.
type fakeCoord struct {
	cloudmlv1.UnimplementedAgentServiceServer
	token  string
	pki    *testutil.PKI
	period time.Duration

	mu          sync.Mutex
	changed     chan struct{}   // closed and replaced on every change
	known       map[string]bool // node ids it registered
	refuse      map[string]bool // node ids whose certificates it refuses
	registers   int
	registered  []*cloudmlv1.RegisterRequest // every accepted Register
	renewals    int
	certTTL     time.Duration // of the node certificates it issues; default 1h
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
	// reportLogs, when set, offers SessionStarted.report_logs and stores
	// the batches reports carry.
	reportLogs bool
	// rejectReport, when set, answers matching reports FAILED_PRECONDITION.
	rejectReport func(r *cloudmlv1.ReportTaskRequest) bool
	// lend, when set, answers BucketToken (else UNIMPLEMENTED); lent
	// records the buckets asked for, by node.
	lend func(bucket string) (*cloudmlv1.BucketTokenResponse, error)
	lent []string
}

// fakeDial is how an agent reaches a fake coordinator: the in-memory
// dialer and a join token that pins its CA.
type fakeDial struct {
	opts  []grpc.DialOption
	token string
}

func newFakeCoordWith(period time.Duration) *fakeCoord {
	return &fakeCoord{
		period:  period,
		changed: make(chan struct{}), known: map[string]bool{}, refuse: map[string]bool{}, logs: map[refKey][]*cloudmlv1.LogBatch{},
	}
}

// serve serves srv (f or a type embedding it) over TLS with f's CA.
func (f *fakeCoord) serve(t *testing.T, srv cloudmlv1.AgentServiceServer) fakeDial {
	s := testutil.ServeTLS(t, func(g *grpc.Server) { cloudmlv1.RegisterAgentServiceServer(g, srv) })
	f.pki = s.PKI
	f.token = s.PKI.Token()
	return fakeDial{opts: []grpc.DialOption{s.Dialer}, token: f.token}
}

func newFakeCoord(t *testing.T) (*fakeCoord, fakeDial) {
	f := newFakeCoordWith(50 * time.Millisecond)
	return f, f.serve(t, f)
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
	id := testutil.PeerName(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" || !f.known[id] || f.refuse[id] {
		return "", status.Error(codes.Unauthenticated, "unknown node certificate")
	}
	return id, nil
}

func (f *fakeCoord) ttl() time.Duration {
	if f.certTTL > 0 {
		return f.certTTL
	}
	return time.Hour
}

func (f *fakeCoord) Register(ctx context.Context, req *cloudmlv1.RegisterRequest) (*cloudmlv1.RegisterResponse, error) {
	if req.GetJoinToken() != f.token {
		return nil, status.Error(codes.Unauthenticated, "bad join token")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers++
	f.registered = append(f.registered, req)
	id := fmt.Sprintf("node-%d", f.registers)
	cert := f.pki.Sign(req.GetCsr(), pki.RoleNode, id, f.ttl())
	f.known[id] = true
	f.notify()
	return &cloudmlv1.RegisterResponse{NodeId: id, Certificate: cert, CaCertificate: f.pki.CA.CertPEM}, nil
}

func (f *fakeCoord) RenewCertificate(ctx context.Context, req *cloudmlv1.RenewCertificateRequest) (*cloudmlv1.RenewCertificateResponse, error) {
	id, err := f.node(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	f.notify()
	return &cloudmlv1.RenewCertificateResponse{Certificate: f.pki.Sign(req.GetCsr(), pki.RoleNode, id, f.ttl())}, nil
}

func (f *fakeCoord) Session(req *cloudmlv1.SessionRequest, stream cloudmlv1.AgentService_SessionServer) error {
	id, err := f.node(stream.Context())
	if err != nil {
		return err
	}
	push, end := make(chan *cloudmlv1.SessionResponse, 16), make(chan struct{})
	f.mu.Lock()
	reportLogs := f.reportLogs
	f.mu.Unlock()
	if err := stream.Send(&cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Started{Started: &cloudmlv1.SessionStarted{
		NodeId: id, HeartbeatPeriod: durationpb.New(f.period), ReportLogs: reportLogs,
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
	f.storeLogs(req.GetRef(), req.GetLogBatches())
	f.reports = append(f.reports, proto.Clone(req).(*cloudmlv1.ReportTaskRequest))
	f.notify()
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (f *fakeCoord) BucketToken(ctx context.Context, req *cloudmlv1.BucketTokenRequest) (*cloudmlv1.BucketTokenResponse, error) {
	id, err := f.node(ctx)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lend == nil {
		return nil, status.Error(codes.Unimplemented, "this fake lends no tokens")
	}
	f.lent = append(f.lent, id+":"+req.GetBucket())
	f.notify()
	return f.lend(req.GetBucket())
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
	f.storeLogs(req.GetRef(), req.GetBatches())
	f.notify()
	if f.failPublish != nil && f.failPublish(f.publishes) {
		return nil, status.Error(codes.Unavailable, "response lost")
	}
	return &cloudmlv1.PublishLogsResponse{AckedSeq: uint64(len(f.logs[keyOf(req.GetRef())]))}, nil
}

// storeLogs keeps the batches that continue ref's sequence and counts
// duplicates; f.mu must be held.
func (f *fakeCoord) storeLogs(ref *cloudmlv1.TaskRef, batches []*cloudmlv1.LogBatch) {
	key := keyOf(ref)
	for _, b := range batches {
		have := uint64(len(f.logs[key]))
		switch {
		case b.GetSeq() <= have:
			f.dupes++
		case b.GetSeq() == have+1:
			f.logs[key] = append(f.logs[key], b)
		}
	}
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
