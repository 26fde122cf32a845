package logship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// store is a fake coordinator log store: it keeps batches by seq, refuses
// gaps and acknowledges the highest contiguous seq, like the real one.
type store struct {
	mu      sync.Mutex
	batches []*cloudmlv1.LogBatch // index seq-1
	calls   int
	dupes   int
	// hook, when set, runs first on each call; a non-nil error fails it.
	hook func(call int, req *cloudmlv1.PublishLogsRequest) error
}

func (s *store) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest, _ ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error) {
	s.mu.Lock()
	s.calls++
	call, hook := s.calls, s.hook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(call, req); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range req.GetBatches() {
		switch {
		case b.GetSeq() <= uint64(len(s.batches)):
			s.dupes++
		case b.GetSeq() == uint64(len(s.batches))+1:
			s.batches = append(s.batches, b)
		}
	}
	return &cloudmlv1.PublishLogsResponse{AckedSeq: uint64(len(s.batches))}, nil
}

// StreamLogs makes the shipper fall back to PublishLogs, as a coordinator
// without StreamLogs does (stream_test.go has the streaming fakes).
func (s *store) StreamLogs(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error) {
	return nil, status.Error(codes.Unimplemented, "unknown method StreamLogs")
}

// text returns what the store holds per stream, checking every batch.
func (s *store) text(t *testing.T) map[cloudmlv1.LogStream]string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[cloudmlv1.LogStream]*strings.Builder{
		cloudmlv1.LogStream_LOG_STREAM_STDOUT: {}, cloudmlv1.LogStream_LOG_STREAM_STDERR: {},
	}
	for i, b := range s.batches {
		if b.GetSeq() != uint64(i+1) {
			t.Fatalf("batch %d has seq %d", i, b.GetSeq())
		}
		if len(b.GetData()) == 0 || b.GetData()[len(b.GetData())-1] != '\n' {
			t.Fatalf("batch %d does not end in a newline", b.GetSeq())
		}
		out[b.GetStream()].Write(b.GetData())
	}
	return map[cloudmlv1.LogStream]string{
		cloudmlv1.LogStream_LOG_STREAM_STDOUT: out[cloudmlv1.LogStream_LOG_STREAM_STDOUT].String(),
		cloudmlv1.LogStream_LOG_STREAM_STDERR: out[cloudmlv1.LogStream_LOG_STREAM_STDERR].String(),
	}
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// ship runs both streams through a Shipper and closes it.
func ship(t *testing.T, ctx context.Context, cfg Config, stdout, stderr io.Reader) (uint64, error) {
	t.Helper()
	s := New(ctx, cfg)
	var wg sync.WaitGroup
	var outTee, errTee bytes.Buffer
	wg.Go(func() { s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, stdout, &outTee) })
	wg.Go(func() { s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDERR, stderr, &errTee) })
	wg.Wait()
	return s.Close(ctx)
}

func fastConfig(t *testing.T, st *store) Config {
	return Config{
		Ref: &cloudmlv1.TaskRef{JobId: "j", TaskIndex: 0, Attempt: 1}, Client: st,
		BatchBytes: 4 << 10, MaxCallBytes: 16 << 10, FlushInterval: 5 * time.Millisecond,
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, Logger: testutil.Logger(t),
	}
}

func TestShipEveryLineOnceInOrder(t *testing.T) {
	st := &store{}
	out, errs := lines(1, 50000), lines(1, 3000)
	last, err := ship(t, context.Background(), fastConfig(t, st), strings.NewReader(out), strings.NewReader(errs))
	if err != nil {
		t.Fatal(err)
	}
	got := st.text(t)
	if got[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != out || got[cloudmlv1.LogStream_LOG_STREAM_STDERR] != errs {
		t.Fatalf("stored streams differ from the input (stdout %d bytes, stderr %d bytes)",
			len(got[cloudmlv1.LogStream_LOG_STREAM_STDOUT]), len(got[cloudmlv1.LogStream_LOG_STREAM_STDERR]))
	}
	if int(last) != len(st.batches) {
		t.Errorf("last seq = %d, store holds %d batches", last, len(st.batches))
	}
}

func TestShipResendsAfterErrorsWithoutDuplicates(t *testing.T) {
	st := &store{}
	st.hook = func(call int, req *cloudmlv1.PublishLogsRequest) error {
		if call == 1 || call == 3 {
			return status.Error(codes.Unavailable, "injected")
		}
		return nil
	}
	out := lines(1, 20000)
	_, err := ship(t, context.Background(), fastConfig(t, st), strings.NewReader(out), strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Fatalf("stored %d bytes, want %d", len(got), len(out))
	}
	if st.calls < 4 {
		t.Errorf("calls = %d, want the failed calls retried", st.calls)
	}
}

func TestShipPartialAckResendsTheRest(t *testing.T) {
	st := &store{}
	partial := &store{}
	// This publisher stores only the first batch of each call.
	pub := publisherFunc(func(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
		return partial.PublishLogs(ctx, &cloudmlv1.PublishLogsRequest{Ref: req.Ref, Batches: req.Batches[:1]})
	})
	cfg := fastConfig(t, st)
	cfg.Client = pub
	out := lines(1, 10000)
	if _, err := ship(t, context.Background(), cfg, strings.NewReader(out), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if got := partial.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Fatalf("stored %d bytes, want %d", len(got), len(out))
	}
}

type publisherFunc func(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error)

func (f publisherFunc) PublishLogs(ctx context.Context, req *cloudmlv1.PublishLogsRequest, _ ...grpc.CallOption) (*cloudmlv1.PublishLogsResponse, error) {
	return f(ctx, req)
}

func (f publisherFunc) StreamLogs(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error) {
	return (*store)(nil).StreamLogs(ctx, opts...)
}

func TestShipPartialLinesAndStreamSwitch(t *testing.T) {
	st := &store{}
	cfg := fastConfig(t, st)
	// Batches close only on the stream switch and at Close: a 5 ms flush
	// could fall between "a\n" and the "b" completed at EOF.
	cfg.FlushInterval = time.Hour
	s := New(context.Background(), cfg)
	s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader("a\nb"), nil)
	s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDERR, strings.NewReader("oops"), nil)
	s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader("c\n"), nil)
	last, err := s.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type b struct {
		Seq    uint64
		Stream cloudmlv1.LogStream
		Data   string
	}
	var got []b
	for _, x := range st.batches {
		got = append(got, b{x.Seq, x.Stream, string(x.Data)})
	}
	want := []b{
		{1, cloudmlv1.LogStream_LOG_STREAM_STDOUT, "a\nb\n"},
		{2, cloudmlv1.LogStream_LOG_STREAM_STDERR, "oops\n"},
		{3, cloudmlv1.LogStream_LOG_STREAM_STDOUT, "c\n"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	if last != 3 {
		t.Errorf("last seq = %d, want 3", last)
	}
	if got := s.Tail(cloudmlv1.LogStream_LOG_STREAM_STDERR); got != "oops" {
		t.Errorf("stderr tail = %q, want oops", got)
	}
}

func TestShipSplitsOverlongLines(t *testing.T) {
	st := &store{}
	cfg := fastConfig(t, st)
	cfg.BatchBytes = 1 << 20
	cfg.MaxCallBytes = 4 << 20
	long := strings.Repeat("x", readBuf+10)
	if _, err := ship(t, context.Background(), cfg, strings.NewReader(long+"\n"), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	want := long[:readBuf] + "\n" + long[readBuf:] + "\n"
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != want {
		t.Errorf("stored %d bytes, want %d split at %d", len(got), len(want), readBuf)
	}
}

func TestShipRejectedStopsWithoutBlocking(t *testing.T) {
	st := &store{hook: func(int, *cloudmlv1.PublishLogsRequest) error {
		return status.Error(codes.FailedPrecondition, "attempt superseded")
	}}
	cfg := fastConfig(t, st)
	cfg.MaxUnacked = 8 << 10 // the readers would block forever if not released
	_, err := ship(t, context.Background(), cfg, strings.NewReader(lines(1, 100000)), strings.NewReader(""))
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Close = %v, want ErrRejected", err)
	}
}

func TestShipBackpressureBlocksReader(t *testing.T) {
	release := make(chan struct{})
	st := &store{}
	st.hook = func(call int, _ *cloudmlv1.PublishLogsRequest) error {
		<-release
		return nil
	}
	cfg := fastConfig(t, st)
	cfg.MaxUnacked = 16 << 10
	s := New(context.Background(), cfg)
	out := lines(1, 100000) // ~590 KB, far beyond MaxUnacked
	copied := make(chan struct{})
	go func() {
		s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(out), nil)
		close(copied)
	}()
	// Wait until the reader is blocked on backpressure.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		full := s.unacked >= cfg.MaxUnacked
		s.mu.Unlock()
		if full {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("reader never filled the unacknowledged window")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-copied:
		t.Fatal("Copy finished while the window was full")
	default:
	}
	s.mu.Lock()
	if s.unacked > cfg.MaxUnacked+readBuf+1 {
		t.Errorf("unacked = %d, want about %d", s.unacked, cfg.MaxUnacked)
	}
	s.mu.Unlock()
	close(release)
	<-copied
	if _, err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
		t.Errorf("stored %d bytes, want %d", len(got), len(out))
	}
}

func TestShipCtxCancelledUnblocks(t *testing.T) {
	st := &store{hook: func(int, *cloudmlv1.PublishLogsRequest) error {
		return status.Error(codes.Unavailable, "down")
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := fastConfig(t, st)
	cfg.MaxUnacked = 8 << 10
	s := New(ctx, cfg)
	copied := make(chan struct{})
	go func() {
		s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(lines(1, 100000)), nil)
		close(copied)
	}()
	cancel()
	<-copied
	if _, err := s.Close(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled", err)
	}
}

// BenchmarkShipMillionLines is `seq 1000000` through the shipper with an
// in-memory store.
func BenchmarkShipMillionLines(b *testing.B) {
	out := []byte(lines(1, 1000000))
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		st := &store{}
		s := New(context.Background(), Config{Ref: &cloudmlv1.TaskRef{JobId: "j"}, Client: st})
		s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, bytes.NewReader(out), io.Discard)
		if _, err := s.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
