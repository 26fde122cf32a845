package reportbatch

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeClient records calls; answer decides each ReportTasks result, and
// hold, when set, keeps each ReportTasks call waiting until it is closed.
type fakeClient struct {
	mu     sync.Mutex
	calls  [][]*cloudmlv1.ReportTaskRequest // ReportTasks calls, in order
	single []*cloudmlv1.ReportTaskRequest   // ReportTask calls
	err    error                            // returned by ReportTasks when set
	answer func(*cloudmlv1.ReportTaskRequest) *cloudmlv1.ReportResult
	short  bool            // answer one result too few
	hold   chan struct{}   // nil: answer at once
	began  chan struct{}   // receives when a ReportTasks call began
	left   []time.Duration // each ReportTasks call's time left to its deadline
}

func (f *fakeClient) ReportTasks(ctx context.Context, in *cloudmlv1.ReportTasksRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTasksResponse, error) {
	f.mu.Lock()
	f.calls = append(f.calls, in.GetReports())
	if d, ok := ctx.Deadline(); ok {
		f.left = append(f.left, time.Until(d))
	}
	hold, began := f.hold, f.began
	f.mu.Unlock()
	if began != nil {
		began <- struct{}{}
	}
	if hold != nil {
		<-hold
	}
	if f.err != nil {
		return nil, f.err
	}
	resp := &cloudmlv1.ReportTasksResponse{}
	for _, r := range in.GetReports() {
		res := &cloudmlv1.ReportResult{}
		if f.answer != nil {
			res = f.answer(r)
		}
		resp.Results = append(resp.Results, res)
	}
	if f.short {
		resp.Results = resp.Results[1:]
	}
	return resp, nil
}

func (f *fakeClient) ReportTask(ctx context.Context, in *cloudmlv1.ReportTaskRequest, _ ...grpc.CallOption) (*cloudmlv1.ReportTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.single = append(f.single, in)
	return &cloudmlv1.ReportTaskResponse{}, nil
}

func (f *fakeClient) callSizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n []int
	for _, c := range f.calls {
		n = append(n, len(c))
	}
	return n
}

func ref(task int32) *cloudmlv1.TaskRef {
	return &cloudmlv1.TaskRef{JobId: "job-1", TaskIndex: task, Attempt: 1}
}

func report(task int32) *cloudmlv1.ReportTaskRequest {
	return &cloudmlv1.ReportTaskRequest{Ref: ref(task), State: cloudmlv1.TaskState_TASK_STATE_RUNNING}
}

// carrying is report(task) carrying a log batch of n bytes.
func carrying(task int32, n int) *cloudmlv1.ReportTaskRequest {
	r := report(task)
	r.LogBatches = []*cloudmlv1.LogBatch{{Seq: 1, Data: make([]byte, n)}}
	return r
}

// release lets the held call and every later one answer at once.
func (f *fakeClient) release() {
	f.mu.Lock()
	hold := f.hold
	f.hold, f.began = nil, nil
	f.mu.Unlock()
	close(hold)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reportAll sends reports of tasks from, ..., to-1 at once and returns
// their errors by task.
func reportAll(t *testing.T, b *Batcher, from, to int32) chan map[int32]error {
	out := make(chan map[int32]error, 1)
	var mu sync.Mutex
	errs := map[int32]error{}
	var wg sync.WaitGroup
	for i := from; i < to; i++ {
		wg.Go(func() {
			_, err := b.ReportTask(ctxT(t), report(i))
			mu.Lock()
			errs[i] = err
			mu.Unlock()
		})
	}
	go func() { wg.Wait(); out <- errs }()
	return out
}

// TestReportsMadeDuringACallGoTogether: the first report goes alone; the
// ones made while it is in flight go out together in the next call, and
// each caller hears its own result.
func TestReportsMadeDuringACallGoTogether(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10)}
	b := New(f, 0)
	first := reportAll(t, b, 0, 1)
	<-f.began
	rest := reportAll(t, b, 1, 6)
	waitQueued(t, b, 5)
	close(f.hold)
	for _, ch := range []chan map[int32]error{first, rest} {
		for task, err := range <-ch {
			if err != nil {
				t.Errorf("report of task %d: %v", task, err)
			}
		}
	}
	if got := f.callSizes(); len(got) != 2 || got[0] != 1 || got[1] != 5 {
		t.Errorf("calls carried %v reports, want [1 5]", got)
	}
}

// waitQueued waits until n reports wait for the next call.
func waitQueued(t *testing.T, b *Batcher, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		q := len(b.queue)
		b.mu.Unlock()
		if q == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reports queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestEachReportHearsItsOwnResult: a report the coordinator refuses gets
// that code and message; the others of the same call succeed.
func TestEachReportHearsItsOwnResult(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10),
		answer: func(r *cloudmlv1.ReportTaskRequest) *cloudmlv1.ReportResult {
			if r.GetRef().GetTaskIndex() == 2 {
				return &cloudmlv1.ReportResult{Code: int32(codes.FailedPrecondition), Message: "attempt job-1/2/1 was superseded"}
			}
			return &cloudmlv1.ReportResult{}
		}}
	b := New(f, 0)
	first := reportAll(t, b, 0, 1)
	<-f.began
	rest := reportAll(t, b, 1, 4)
	waitQueued(t, b, 3)
	close(f.hold)
	<-first
	for task, err := range <-rest {
		switch {
		case task == 2 && (status.Code(err) != codes.FailedPrecondition || status.Convert(err).Message() != "attempt job-1/2/1 was superseded"):
			t.Errorf("refused report: %v, want FailedPrecondition with the coordinator's message", err)
		case task != 2 && err != nil:
			t.Errorf("report of task %d: %v", task, err)
		}
	}
}

// TestAFailedCallFailsEveryReportInIt: when the call fails as a whole,
// every report in it gets the call's error (the callers retry them), and
// a short answer is an error for all rather than results matched wrongly.
func TestAFailedCallFailsEveryReportInIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *fakeClient
		want codes.Code
	}{
		{"unavailable", &fakeClient{err: status.Error(codes.Unavailable, "the store failed")}, codes.Unavailable},
		{"short answer", &fakeClient{short: true}, codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.hold, tc.f.began = make(chan struct{}), make(chan struct{}, 10)
			b := New(tc.f, 0)
			first := reportAll(t, b, 0, 1)
			<-tc.f.began
			rest := reportAll(t, b, 1, 4)
			waitQueued(t, b, 3)
			close(tc.f.hold)
			for _, ch := range []chan map[int32]error{first, rest} {
				for task, err := range <-ch {
					if status.Code(err) != tc.want {
						t.Errorf("report of task %d: %v, want %s", task, err, tc.want)
					}
				}
			}
		})
	}
}

// TestOldCoordinatorGetsOneCallPerReport: a coordinator without
// ReportTasks (Unimplemented) gets the same reports as ReportTask calls,
// that one and every later one.
func TestOldCoordinatorGetsOneCallPerReport(t *testing.T) {
	f := &fakeClient{err: status.Error(codes.Unimplemented, "unknown method ReportTasks")}
	b := New(f, 0)
	for i := range int32(3) {
		if _, err := b.ReportTask(ctxT(t), report(i)); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) != 1 || len(f.single) != 3 {
		t.Errorf("%d ReportTasks and %d ReportTask calls, want 1 (refused) and 3", len(f.calls), len(f.single))
	}
}

// TestACallerThatGivesUpReturns: a caller's context ends its wait even
// while its report's call is held up.
func TestACallerThatGivesUpReturns(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10)}
	defer close(f.hold)
	b := New(f, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := b.ReportTask(ctx, report(0))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a report whose caller gave up: %v, want DeadlineExceeded", err)
	}
}

// TestAtMostMaxReportsPerCall: a queue longer than the coordinator's limit
// goes out in several calls.
func TestAtMostMaxReportsPerCall(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10)}
	b := New(f, 0)
	first := reportAll(t, b, 0, 1)
	<-f.began
	rest := reportAll(t, b, 1, MaxReports+11)
	waitQueued(t, b, MaxReports+10)
	f.release()
	<-first
	for task, err := range <-rest {
		if err != nil {
			t.Fatalf("report of task %d: %v", task, err)
		}
	}
	if got := f.callSizes(); len(got) != 3 || got[1] != MaxReports || got[2] != 10 {
		t.Errorf("calls carried %v reports, want [1 %d 10]", got, MaxReports)
	}
}

// TestEachCallIsBoundedByTheTimeout: a call's deadline is New's timeout,
// or 10 s when that is zero or negative.
func TestEachCallIsBoundedByTheTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout, want time.Duration
	}{{0, 10 * time.Second}, {-time.Second, 10 * time.Second}, {2 * time.Second, 2 * time.Second}} {
		f := &fakeClient{}
		if _, err := New(f, tc.timeout).ReportTask(ctxT(t), report(0)); err != nil {
			t.Fatalf("timeout %s: %v", tc.timeout, err)
		}
		if len(f.left) != 1 || f.left[0] > tc.want || f.left[0] < tc.want-time.Second {
			t.Errorf("timeout %s: the call had %v left, want just under %s", tc.timeout, f.left, tc.want)
		}
	}
}

// TestEachCallIsBoundedInBytes: reports that carry logs go out in calls
// of at most MaxCallBytes; one report larger than that goes alone.
func TestEachCallIsBoundedInBytes(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10)}
	b := New(f, 0)
	first := reportAll(t, b, 0, 1)
	<-f.began
	// Five reports of a little over 1 MiB (three fit a call), then one of
	// 5 MiB (alone).
	reqs := []*cloudmlv1.ReportTaskRequest{}
	for i := range int32(5) {
		reqs = append(reqs, carrying(i+1, 1<<20))
	}
	reqs = append(reqs, carrying(6, 5<<20))
	var wg sync.WaitGroup
	for _, r := range reqs {
		wg.Go(func() {
			if _, err := b.ReportTask(ctxT(t), r); err != nil {
				t.Errorf("report of task %d: %v", r.GetRef().GetTaskIndex(), err)
			}
		})
		waitQueued(t, b, int(r.GetRef().GetTaskIndex())) // in this order
	}
	f.release()
	<-first
	wg.Wait()
	want := []int{1, 3, 2, 1}
	if got := f.callSizes(); !slices.Equal(got, want) {
		t.Errorf("calls carried %v reports, want %v", got, want)
	}
}

// TestACallMayHoldExactlyMaxCallBytes: reports that add up to exactly
// MaxCallBytes go in one call.
func TestACallMayHoldExactlyMaxCallBytes(t *testing.T) {
	f := &fakeClient{hold: make(chan struct{}), began: make(chan struct{}, 10)}
	b := New(f, 0)
	first := reportAll(t, b, 0, 1)
	<-f.began
	one := carrying(1, 1<<20)
	n := MaxCallBytes - proto.Size(one) - 64 // the second report's data, grown to fit exactly
	for proto.Size(one)+proto.Size(carrying(2, n)) < MaxCallBytes {
		n++
	}
	two := carrying(2, n)
	if got := proto.Size(one) + proto.Size(two); got != MaxCallBytes {
		t.Fatalf("the two reports are %d bytes, not MaxCallBytes (%d)", got, MaxCallBytes)
	}
	var wg sync.WaitGroup
	for i, r := range []*cloudmlv1.ReportTaskRequest{one, two} {
		wg.Go(func() {
			if _, err := b.ReportTask(ctxT(t), r); err != nil {
				t.Errorf("report %d: %v", i, err)
			}
		})
		waitQueued(t, b, i+1)
	}
	f.release()
	<-first
	wg.Wait()
	if got, want := f.callSizes(), []int{1, 2}; !slices.Equal(got, want) {
		t.Errorf("calls carried %v reports, want %v", got, want)
	}
}
