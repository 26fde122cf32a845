package logship

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// streamServer is a fake coordinator serving StreamLogs (and PublishLogs)
// over bufconn into a store. By default it acknowledges after every
// request; the hooks change that.
type streamServer struct {
	cloudmlv1.UnimplementedAgentServiceServer
	st *store

	mu      sync.Mutex
	streams int
	refs    []*cloudmlv1.TaskRef
	// firstAckAfter, when set, holds the first acknowledgement of the first
	// stream until batches up to this seq have arrived on it.
	firstAckAfter uint64
	// inFlight is, for each acknowledgement sent, how many batches had
	// arrived beyond the previous one.
	inFlight []uint64
	// broken, when set, runs after a request is stored and may end the
	// stream with an error (the ack for that request is not sent).
	broken func(stream int, acked uint64) error
	// silent, when set, stops acknowledging on the streams it names.
	silent func(stream int) bool
	// forget, when set, drops the batches after the last acknowledged one
	// when a stream breaks (a coordinator crash losing an unsynced tail).
	forget   bool
	ackedMax uint64 // the highest seq acknowledged on any stream
}

func (f *streamServer) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
	return f.st.PublishLogs(ctx, req)
}

func (f *streamServer) StreamLogs(stream cloudmlv1.AgentService_StreamLogsServer) error {
	f.mu.Lock()
	f.streams++
	n := f.streams
	f.mu.Unlock()
	var sent, last uint64
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the agent closed its side or went away
		}
		f.mu.Lock()
		f.refs = append(f.refs, req.GetRef())
		broken, silent, hold := f.broken, f.silent, f.firstAckAfter
		f.mu.Unlock()
		if bs := req.GetBatches(); len(bs) > 0 {
			last = bs[len(bs)-1].GetSeq()
		} else { // a resuming agent asks how far the logs got
			if err := stream.Send(f.st.progress()); err != nil {
				return err
			}
			continue
		}
		resp, _ := f.st.PublishLogs(stream.Context(), &cloudmlv1.PublishLogsRequest{Ref: req.GetRef(), Batches: req.GetBatches()})
		acked := resp.GetAckedSeq()
		if broken != nil {
			if err := broken(n, acked); err != nil {
				if f.forget {
					f.mu.Lock()
					keep := f.ackedMax
					f.mu.Unlock()
					f.st.mu.Lock()
					f.st.batches = f.st.batches[:keep]
					f.st.mu.Unlock()
				}
				return err
			}
		}
		if (silent != nil && silent(n)) || (n == 1 && sent == 0 && last < hold) {
			continue
		}
		f.mu.Lock()
		f.inFlight = append(f.inFlight, last-sent)
		f.ackedMax = max(f.ackedMax, acked)
		f.mu.Unlock()
		sent = acked
		if err := stream.Send(&cloudmlv1.StreamLogsResponse{AckedSeq: acked}); err != nil {
			return err
		}
	}
}

// serve starts f on bufconn and returns a client for it.
func serve(t *testing.T, srv cloudmlv1.AgentServiceServer) cloudmlv1.AgentServiceClient {
	t.Helper()
	cc := testutil.ConnectGRPC(t, func(g *grpc.Server) { cloudmlv1.RegisterAgentServiceServer(g, srv) })
	return cloudmlv1.NewAgentServiceClient(cc)
}

func streamConfig(t *testing.T, f *streamServer) Config {
	cfg := fastConfig(t, f.st)
	cfg.Client = serve(t, f)
	cfg.CallTimeout = 5 * time.Second
	return cfg
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStreamPipelinesBatches(t *testing.T) {
	f := &streamServer{st: &store{}, firstAckAfter: 3}
	out, errs := lines(1, 50000), lines(1, 3000)
	last, err := ship(t, ctxT(t), streamConfig(t, f), strings.NewReader(out), strings.NewReader(errs))
	if err != nil {
		t.Fatal(err)
	}
	got := f.st.text(t)
	if got[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != out || got[cloudmlv1.LogStream_LOG_STREAM_STDERR] != errs {
		t.Fatal("stored streams differ from the input")
	}
	if int(last) != len(f.st.batches) || f.st.dupes != 0 {
		t.Errorf("last seq %d, stored %d batches with %d duplicates; want %d and none", last, len(f.st.batches), f.st.dupes, last)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The shipper sent three batches before it had any acknowledgement:
	// with one call in flight it would have waited forever.
	if len(f.inFlight) == 0 || f.inFlight[0] < 3 {
		t.Errorf("batches in flight at the first ack = %v, want at least 3", f.inFlight)
	}
	if f.streams != 1 || f.st.calls != len(f.refs) {
		t.Errorf("streams = %d, PublishLogs calls = %d; want 1 stream and no calls", f.streams, f.st.calls-len(f.refs))
	}
	for _, r := range f.refs {
		if !proto.Equal(r, &cloudmlv1.TaskRef{JobId: "j", TaskIndex: 0, Attempt: 1}) {
			t.Fatalf("request names %v, want the attempt", r)
		}
	}
}

func TestStreamResendsAfterBreakWithoutLossOrDuplicates(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forget bool
	}{
		{"stored but unacknowledged", false},
		{"unsynced tail lost", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &streamServer{st: &store{}, forget: tc.forget}
			// The first two streams break once batches past 5 (then 12) are
			// stored, before acknowledging them.
			f.broken = func(stream int, acked uint64) error {
				if (stream == 1 && acked >= 5) || (stream == 2 && acked >= 12) {
					return status.Error(codes.Unavailable, "injected break")
				}
				return nil
			}
			out := lines(1, 30000)
			if _, err := ship(t, ctxT(t), streamConfig(t, f), strings.NewReader(out), strings.NewReader("")); err != nil {
				t.Fatal(err)
			}
			if got := f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
				t.Fatalf("stored %d bytes, want %d", len(got), len(out))
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.streams < 3 {
				t.Errorf("streams = %d, want the broken ones reopened", f.streams)
			}
			// Forgotten batches come back as new ones; kept ones as duplicates.
			if !tc.forget && f.st.dupes == 0 {
				t.Error("no batch was resent after the breaks")
			}
		})
	}
}

func TestStreamReopensWhenAcksStall(t *testing.T) {
	f := &streamServer{st: &store{}, silent: func(stream int) bool { return stream == 1 }}
	cfg := streamConfig(t, f)
	cfg.CallTimeout = 50 * time.Millisecond
	out := lines(1, 5000)
	if _, err := ship(t, ctxT(t), cfg, strings.NewReader(out), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if got := f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Fatalf("stored %d bytes, want %d", len(got), len(out))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams < 2 {
		t.Errorf("streams = %d, want the silent one replaced", f.streams)
	}
}

func TestStreamRejectedStopsWithoutBlocking(t *testing.T) {
	f := &streamServer{st: &store{}}
	f.broken = func(int, uint64) error { return status.Error(codes.FailedPrecondition, "attempt superseded") }
	cfg := streamConfig(t, f)
	cfg.MaxUnacked = 8 << 10 // the readers would block forever if not released
	_, err := ship(t, ctxT(t), cfg, strings.NewReader(lines(1, 100000)), strings.NewReader(""))
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Close = %v, want ErrRejected", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams != 1 {
		t.Errorf("streams = %d, want 1: a rejection is final", f.streams)
	}
}

// oldCoordinator has PublishLogs but not StreamLogs.
type oldCoordinator struct {
	cloudmlv1.UnimplementedAgentServiceServer
	st *store
}

func (o *oldCoordinator) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
	return o.st.PublishLogs(ctx, req)
}

func TestStreamUnimplementedFallsBackToPublish(t *testing.T) {
	st := &store{}
	cfg := fastConfig(t, st)
	cfg.Client = serve(t, &oldCoordinator{st: st})
	out := lines(1, 20000)
	if _, err := ship(t, ctxT(t), cfg, strings.NewReader(out), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Fatalf("stored %d bytes, want %d", len(got), len(out))
	}
	if st.calls == 0 {
		t.Error("no PublishLogs call")
	}
}

// progress answers a request with no batches, as the coordinator does.
func (s *store) progress() *cloudmlv1.StreamLogsResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &cloudmlv1.StreamLogsResponse{AckedSeq: uint64(len(s.batches))}
	for _, b := range s.batches {
		if b.GetStream() == cloudmlv1.LogStream_LOG_STREAM_STDERR {
			resp.StderrBytes += uint64(len(b.GetData()))
		} else {
			resp.StdoutBytes += uint64(len(b.GetData()))
		}
	}
	return resp
}

// An agent restarted while its task container runs reads the container's
// output again from the start: the resuming shipper skips what the first
// agent stored and numbers on, so each line is stored once.
func TestStreamResumeSkipsWhatAnEarlierAgentShipped(t *testing.T) {
	f := &streamServer{st: &store{}}
	outA, errA := lines(1, 20000), lines(1, 700)
	if _, err := ship(t, ctxT(t), streamConfig(t, f), strings.NewReader(outA), strings.NewReader(errA)); err != nil {
		t.Fatal(err)
	}
	firstSeqs := len(f.st.batches)

	outB, errB := lines(20001, 30000), lines(701, 900)
	cfg := streamConfig(t, f)
	cfg.Resume = true
	last, err := ship(t, ctxT(t), cfg, strings.NewReader(outA+outB), strings.NewReader(errA+errB))
	if err != nil {
		t.Fatal(err)
	}
	got := f.st.text(t)
	if got[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != outA+outB || got[cloudmlv1.LogStream_LOG_STREAM_STDERR] != errA+errB {
		t.Errorf("stored stdout %d bytes, stderr %d; want %d and %d, each line once",
			len(got[cloudmlv1.LogStream_LOG_STREAM_STDOUT]), len(got[cloudmlv1.LogStream_LOG_STREAM_STDERR]), len(outA+outB), len(errA+errB))
	}
	if f.st.dupes != 0 || int(last) != len(f.st.batches) || int(last) <= firstSeqs {
		t.Errorf("dupes %d, last seq %d, stored %d batches (%d before the restart)", f.st.dupes, last, len(f.st.batches), firstSeqs)
	}
}

// A resuming shipper against a coordinator without StreamLogs ships
// everything, as before.
func TestStreamResumeWithoutStreamLogsShipsAll(t *testing.T) {
	st := &store{}
	cfg := fastConfig(t, st)
	cfg.Resume = true
	out := lines(1, 5000)
	if _, err := ship(t, ctxT(t), cfg, strings.NewReader(out), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Errorf("stored %d bytes, want %d", len(got), len(out))
	}
}
