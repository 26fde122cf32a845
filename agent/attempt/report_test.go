package attempt

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// reportLog is a Client that records the reports it is sent.
type reportLog struct {
	Client
	mu   sync.Mutex
	sent []*cloudmlv1.ReportTaskRequest
}

func (l *reportLog) ReportTask(_ context.Context, in *cloudmlv1.ReportTaskRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, in)
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (l *reportLog) states() []cloudmlv1.TaskState {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []cloudmlv1.TaskState
	for _, r := range l.sent {
		out = append(out, r.GetState())
	}
	return out
}

func testReporter(t *testing.T, hold time.Duration) (*reporter, *reportLog) {
	t.Helper()
	l := &reportLog{}
	cfg := Config{Client: l, ProgressHold: hold}
	cfg.setDefaults()
	return newReporter(t.Context(), &cfg, cfg.Logger), l
}

const (
	staging   = cloudmlv1.TaskState_TASK_STATE_STAGING
	running   = cloudmlv1.TaskState_TASK_STATE_RUNNING
	succeeded = cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
)

// TestHeldProgressIsSentWhenNothingFollows: a progress report that no later
// report makes stale within the hold is sent, with no start_time (its own
// time is the start), and the reports after it still are, in order.
func TestHeldProgressIsSentWhenNothingFollows(t *testing.T) {
	rep, l := testReporter(t, time.Millisecond)
	rep.send(&cloudmlv1.ReportTaskRequest{State: staging})
	for deadline := time.Now().Add(10 * time.Second); len(l.states()) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the held STAGING report was never sent")
		}
	}
	if err := rep.finish(t.Context(), &cloudmlv1.ReportTaskRequest{State: succeeded}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]cloudmlv1.TaskState{staging, succeeded}, l.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if st := l.sent[0].GetStartTime(); st != nil {
		t.Errorf("a progress report sent on its own carries start_time %v", st)
	}
}

// TestStaleProgressCarriesItsStart: reports queued behind a held one make
// it stale one after the other; the one sent carries the first one's time
// as start_time, and a start_time already set is kept.
func TestStaleProgressCarriesItsStart(t *testing.T) {
	rep, l := testReporter(t, time.Hour)
	began := timestamppb.New(time.Now().Add(-time.Minute))
	rep.queue <- &cloudmlv1.ReportTaskRequest{State: staging, Time: began}
	rep.queue <- &cloudmlv1.ReportTaskRequest{State: running, Time: timestamppb.Now()}
	if err := rep.finish(t.Context(), &cloudmlv1.ReportTaskRequest{State: succeeded}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]cloudmlv1.TaskState{succeeded}, l.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if got := l.sent[0].GetStartTime(); !got.AsTime().Equal(began.AsTime()) {
		t.Errorf("start_time %v, want the STAGING report's time %v", got.AsTime(), began.AsTime())
	}
}

// TestHeldProgressIsSentWhenTheAttemptStops: a held report whose attempt
// stops with no end report (agent shutdown, a lost runtime) is still sent.
func TestHeldProgressIsSentWhenTheAttemptStops(t *testing.T) {
	rep, l := testReporter(t, time.Hour)
	rep.send(&cloudmlv1.ReportTaskRequest{State: running})
	if err := rep.finish(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]cloudmlv1.TaskState{running}, l.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}
