package logbroker

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/coordinator/store"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// fakeJobs is a job store of one job whose attempts node may send logs
// for while accept allows it.
type fakeJobs struct {
	mu       sync.Mutex
	accept   error // AcceptLogs's answer
	attempts []Ref
	done     bool
	deleted  bool
}

var errStale = errors.New("attempt not wanted")

func (f *fakeJobs) AcceptLogs(string, Ref) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accept
}

func (f *fakeJobs) LogView(*cloudmlv1.SubscribeLogsRequest) (View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return View{Attempts: f.attempts, Done: f.done, State: cloudmlv1.JobState_JOB_STATE_SUCCEEDED}, nil
}

func (f *fakeJobs) HasJob(string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.deleted
}

func (f *fakeJobs) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func newBroker(t *testing.T, jobs Jobs) *Broker {
	t.Helper()
	st, err := store.OpenWith(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	b, err := New(Config{Store: st, Jobs: jobs, CallBytes: 1 << 10, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var ref = Ref{Job: "lb-000001", Task: 0, Attempt: 1}

func publish(b *Broker, seq uint64, data string) (uint64, error) {
	return b.Publish("node-1", &cloudmlv1.PublishLogsRequest{
		Ref:     &cloudmlv1.TaskRef{JobId: ref.Job, TaskIndex: ref.Task, Attempt: ref.Attempt},
		Batches: []*cloudmlv1.LogBatch{{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(data)}},
	})
}

// subscriber collects what a subscription sends.
type subscriber struct {
	grpc.ServerStream
	ctx  context.Context
	mu   sync.Mutex
	msgs []*cloudmlv1.SubscribeLogsResponse
	sent chan struct{}
}

func newSubscriber(ctx context.Context) *subscriber {
	return &subscriber{ctx: ctx, sent: make(chan struct{}, 16)}
}

func (s *subscriber) Context() context.Context { return s.ctx }

func (s *subscriber) Send(m *cloudmlv1.SubscribeLogsResponse) error {
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	s.sent <- struct{}{}
	return nil
}

// A publish the job store refuses stores nothing and returns its reason.
func TestPublishRefusedByTheJobStoreStoresNothing(t *testing.T) {
	jobs := &fakeJobs{accept: errStale}
	b := newBroker(t, jobs)
	if _, err := publish(b, 1, "x\n"); !errors.Is(err, errStale) {
		t.Fatalf("got %v, want the job store's %v", err, errStale)
	}
	if acked, err := b.store.AckedSeq(ref.Job, ref.Task, ref.Attempt); err != nil || acked != 0 {
		t.Errorf("AckedSeq after a refused publish = %d, %v; want 0", acked, err)
	}
}

// A call over CallBytes is ErrTooLarge and stores nothing.
func TestPublishOverTheCallLimit(t *testing.T) {
	b := newBroker(t, &fakeJobs{})
	big := make([]byte, 2<<10)
	for i := range big {
		big[i] = 'x'
	}
	big[len(big)-1] = '\n'
	if _, err := publish(b, 1, string(big)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if acked, _ := publish(b, 1, "small\n"); acked != 1 {
		t.Errorf("acked %d after the refused call, want 1: the big batch must not have taken seq 1", acked)
	}
}

// A follower gets what is stored, wakes for what is published after,
// and ends with the job's state once the job store says it is done.
func TestSubscribeFollowsUntilTheJobIsDone(t *testing.T) {
	jobs := &fakeJobs{attempts: []Ref{ref}}
	b := newBroker(t, jobs)
	if _, err := publish(b, 1, "first\n"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := newSubscriber(ctx)
	ended := make(chan error, 1)
	go func() {
		ended <- b.Subscribe(ctx, &cloudmlv1.SubscribeLogsRequest{JobId: ref.Job, Follow: true}, sub)
	}()
	<-sub.sent // "first"
	if _, err := publish(b, 2, "second\n"); err != nil {
		t.Fatal(err)
	}
	<-sub.sent // "second", woken by the publish
	jobs.set(func() { jobs.done = true })
	b.Wake(ref.Job) // the job's state changed
	if err := <-ended; err != nil {
		t.Fatalf("subscription: %v", err)
	}
	var got []string
	for _, m := range sub.msgs {
		got = append(got, string(m.GetData()))
	}
	if len(sub.msgs) != 3 || got[0] != "first\n" || got[1] != "second\n" || sub.msgs[2].GetJobState() != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Errorf("sent %q (last state %s), want first, second, then the job's end", got, sub.msgs[len(sub.msgs)-1].GetJobState())
	}
}

// A job deleted while read ends the subscription with ErrNotFound, never
// with a job state that would claim everything was sent.
func TestSubscribeToADeletedJob(t *testing.T) {
	jobs := &fakeJobs{attempts: []Ref{ref}, done: true, deleted: true}
	b := newBroker(t, jobs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := b.Subscribe(ctx, &cloudmlv1.SubscribeLogsRequest{JobId: ref.Job}, newSubscriber(ctx))
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("an empty Config passed Validate")
	}
}

// A call of exactly CallBytes is taken; CallBytes 0 is refused.
func TestCallLimitBoundary(t *testing.T) {
	b := newBroker(t, &fakeJobs{})
	exact := make([]byte, b.cfg.CallBytes)
	for i := range exact {
		exact[i] = 'x'
	}
	exact[len(exact)-1] = '\n'
	if acked, err := publish(b, 1, string(exact)); err != nil || acked != 1 {
		t.Errorf("a call of exactly CallBytes: acked %d, %v; want 1, nil", acked, err)
	}
	cfg := b.cfg
	cfg.CallBytes = 0
	if err := cfg.Validate(); err == nil {
		t.Error("CallBytes 0 passed Validate")
	}
}

// agentStream is an AgentService.StreamLogs server stream fed from reqs.
type agentStream struct {
	grpc.ServerStream
	ctx  context.Context
	reqs chan *cloudmlv1.StreamLogsRequest
	acks chan *cloudmlv1.StreamLogsResponse
}

func newAgentStream(ctx context.Context) *agentStream {
	return &agentStream{ctx: ctx, reqs: make(chan *cloudmlv1.StreamLogsRequest), acks: make(chan *cloudmlv1.StreamLogsResponse, 16)}
}

func (s *agentStream) Context() context.Context { return s.ctx }

func (s *agentStream) Recv() (*cloudmlv1.StreamLogsRequest, error) {
	select {
	case r, ok := <-s.reqs:
		if !ok {
			return nil, io.EOF
		}
		return r, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

func (s *agentStream) Send(m *cloudmlv1.StreamLogsResponse) error {
	s.acks <- m
	return nil
}

func streamReq(r Ref, seq uint64, data string) *cloudmlv1.StreamLogsRequest {
	req := &cloudmlv1.StreamLogsRequest{Ref: &cloudmlv1.TaskRef{JobId: r.Job, TaskIndex: r.Task, Attempt: r.Attempt}}
	if seq > 0 {
		req.Batches = []*cloudmlv1.LogBatch{{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDERR, Data: []byte(data)}}
	}
	return req
}

// serveStream runs Stream and returns the stream and where its end goes.
func serveStream(t *testing.T, b *Broker) (*agentStream, chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	s := newAgentStream(ctx)
	ended := make(chan error, 1)
	go func() { ended <- b.Stream(ctx, "node-1", s) }()
	return s, ended
}

// A stream acknowledges its batches once they are durable, answers a
// request with no batches with the byte counts, and ends cleanly when the
// agent closes its side.
func TestStreamAcknowledgesWhatIsDurable(t *testing.T) {
	b := newBroker(t, &fakeJobs{})
	s, ended := serveStream(t, b)
	s.reqs <- streamReq(ref, 1, "one\n")
	if ack := <-s.acks; ack.GetAckedSeq() != 1 {
		t.Fatalf("ack %d, want 1", ack.GetAckedSeq())
	}
	s.reqs <- streamReq(ref, 1, "one\n") // a resend: stored once
	s.reqs <- streamReq(ref, 2, "two!\n")
	for ack := <-s.acks; ack.GetAckedSeq() < 2; ack = <-s.acks {
	}
	if acked, err := b.store.AckedSeq(ref.Job, ref.Task, ref.Attempt); err != nil || acked != 2 {
		t.Errorf("durable seq %d, %v; want 2", acked, err)
	}
	s.reqs <- streamReq(ref, 0, "") // asks for the byte counts
	if ack := <-s.acks; ack.GetAckedSeq() != 2 || ack.GetStderrBytes() != 9 || ack.GetStdoutBytes() != 0 {
		t.Errorf("asked: %v, want acked 2 with 9 stderr bytes", ack)
	}
	close(s.reqs)
	if err := <-ended; err != nil {
		t.Errorf("stream closed by the agent ended with %v", err)
	}
}

// A stream ends with the reason when a request names another attempt,
// leaves a gap, or is for an attempt the job store no longer wants; what
// came before is kept.
func TestStreamEndsOnABadRequest(t *testing.T) {
	other := Ref{Job: ref.Job, Task: 1, Attempt: 1}
	for _, tc := range []struct {
		name string
		next *cloudmlv1.StreamLogsRequest
		want error
		stop bool // the job store stops wanting the attempt first
	}{
		{"another attempt", streamReq(other, 2, "x\n"), ErrInvalid, false},
		{"a gap", streamReq(ref, 3, "three\n"), ErrLogsIncomplete, false},
		{"not wanted", streamReq(ref, 2, "two\n"), errStale, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs := &fakeJobs{}
			b := newBroker(t, jobs)
			s, ended := serveStream(t, b)
			s.reqs <- streamReq(ref, 1, "one\n")
			<-s.acks
			if tc.stop {
				jobs.set(func() { jobs.accept = errStale })
			}
			s.reqs <- tc.next
			if err := <-ended; !errors.Is(err, tc.want) {
				t.Errorf("stream ended with %v, want %v", err, tc.want)
			}
			if acked, _ := b.store.AckedSeq(ref.Job, ref.Task, ref.Attempt); acked != 1 {
				t.Errorf("durable seq %d after the refusal, want 1 (what came before is kept)", acked)
			}
		})
	}
}

// A stream ends when the coordinator stops.
func TestStreamEndsWhenTheBrokerStops(t *testing.T) {
	st, err := store.OpenWith(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan struct{})
	b, err := New(Config{Store: st, Jobs: &fakeJobs{}, CallBytes: 1 << 10, Done: done})
	if err != nil {
		t.Fatal(err)
	}
	_, ended := serveStream(t, b)
	close(done)
	if err := <-ended; !errors.Is(err, ErrStopped) {
		t.Errorf("stream ended with %v, want ErrStopped", err)
	}
}

// A follower wakes for lines that arrive on an agent's stream, before
// they are acknowledged.
func TestSubscribeWakesForStreamedLines(t *testing.T) {
	jobs := &fakeJobs{attempts: []Ref{ref}}
	b := newBroker(t, jobs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := newSubscriber(ctx)
	go b.Subscribe(ctx, &cloudmlv1.SubscribeLogsRequest{JobId: ref.Job, Follow: true}, sub)
	for { // the follower is waiting for the job's next change
		b.mu.Lock()
		_, waiting := b.waiters[ref.Job]
		b.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	s, _ := serveStream(t, b)
	s.reqs <- streamReq(ref, 1, "streamed\n")
	select {
	case <-sub.sent:
	case <-ctx.Done():
		t.Fatal("the follower was not woken for a streamed line")
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if string(sub.msgs[0].GetData()) != "streamed\n" {
		t.Errorf("the follower got %q, want the streamed line", sub.msgs[0].GetData())
	}
}

// Carry stores and syncs each report's batches, with its own outcome:
// what it acknowledges is durable, and a refused entry stores nothing.
func TestCarryEachEntryItsOwnOutcome(t *testing.T) {
	b := newBroker(t, &fakeJobs{})
	other := Ref{Job: ref.Job, Task: 1, Attempt: 1}
	line := func(seq uint64, data string) []*cloudmlv1.LogBatch {
		return []*cloudmlv1.LogBatch{{Seq: seq, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(data)}}
	}
	errs := b.Carry("node-1", []Carried{
		{Ref: ref, Batches: line(1, "a\n")},
		{Ref: other, Batches: line(1, strings.Repeat("x", 2<<10)+"\n")},
	})
	if len(errs) != 2 || errs[0] != nil || !errors.Is(errs[1], ErrTooLarge) {
		t.Fatalf("Carry = %v, want [nil, ErrTooLarge]", errs)
	}
	for _, c := range []struct {
		r    Ref
		want uint64
	}{{ref, 1}, {other, 0}} {
		if acked, err := b.store.AckedSeq(c.r.Job, c.r.Task, c.r.Attempt); err != nil || acked != c.want {
			t.Errorf("AckedSeq(%v) = %d, %v; want %d durable", c.r, acked, err, c.want)
		}
	}
}
