package attempt

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// reportsSeen is a Client that records the states reported.
type reportsSeen struct {
	Client
	mu     sync.Mutex
	states []cloudmlv1.TaskState
}

func (r *reportsSeen) ReportTask(_ context.Context, in *cloudmlv1.ReportTaskRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, in.GetState())
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (r *reportsSeen) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.states)
}

// TestStagingDelay: STAGING followed by RUNNING within the staging delay
// is not sent; with no delay, or when RUNNING comes later, it is.
func TestStagingDelay(t *testing.T) {
	staging, running := cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING
	for _, tc := range []struct {
		name  string
		delay time.Duration // Config.StagingDelay
		later bool          // RUNNING only once STAGING was sent
		want  []cloudmlv1.TaskState
	}{
		{"RUNNING within the delay", time.Minute, false, []cloudmlv1.TaskState{running}},
		{"RUNNING after the delay", time.Millisecond, true, []cloudmlv1.TaskState{staging, running}},
		{"no delay", 0, false, []cloudmlv1.TaskState{staging, running}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Several rounds: with no delay, a reporter that waited at all
			// could find RUNNING queued already and drop STAGING.
			for range 20 {
				seen := &reportsSeen{}
				cfg := Config{Client: seen, StagingDelay: tc.delay, Logger: testutil.Logger(t)}
				cfg.setDefaults()
				rep := newReporter(t.Context(), &cfg, cfg.Logger)
				rep.send(&cloudmlv1.ReportTaskRequest{State: staging})
				for tc.later && seen.count() == 0 {
					time.Sleep(time.Millisecond) // polling interval
				}
				rep.send(&cloudmlv1.ReportTaskRequest{State: running})
				if err := rep.finish(t.Context(), nil); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(seen.states, tc.want) {
					t.Fatalf("reported %v, want %v", seen.states, tc.want)
				}
			}
		})
	}
}
