package logship

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestConfigDefaults(t *testing.T) {
	logger := hclog.NewNullLogger()
	defaults := Config{
		BatchBytes: 512 << 10, FlushInterval: 100 * time.Millisecond, MaxCallBytes: 2 << 20,
		MaxUnacked: 64 << 20, CallTimeout: 10 * time.Second, BackoffMin: 200 * time.Millisecond, BackoffMax: 10 * time.Second,
		CarryWait: time.Second,
	}
	set := Config{
		BatchBytes: 1, FlushInterval: 2, MaxCallBytes: 3, MaxUnacked: 4, CallTimeout: 5, BackoffMin: 6, BackoffMax: 7, CarryWait: 8, Logger: logger,
	}
	for _, tc := range []struct {
		name   string
		in     Config
		want   Config
		logger hclog.Logger // nil: any non-nil logger
	}{
		{"zero", Config{}, defaults, nil},
		{"negative", Config{BatchBytes: -1, FlushInterval: -1, MaxCallBytes: -1, MaxUnacked: -1, CallTimeout: -1, BackoffMin: -1, BackoffMax: -1, CarryWait: -1}, defaults, nil},
		{"set", set, set, logger},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			got.setDefaults()
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Config{}, "Logger")); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if got.Logger == nil || (tc.logger != nil && got.Logger != tc.logger) {
				t.Errorf("logger = %v, want %v (any non-nil if that is nil)", got.Logger, tc.logger)
			}
		})
	}
}

// A batch holds whole lines and closes once it is full; it goes over
// BatchBytes only for one line longer than that.
func TestBatchBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		copies []string // one Copy of stdout each
		want   []string // the batches
	}{
		{"lines exactly filling the room", []string{"abc\n", "hijkl\n", "z\n"}, []string{"abc\nhijkl\n", "z\n"}},
		{"a partial line whose newline fills the room", []string{"abc\n", "hijkl", "z\n"}, []string{"abc\nhijkl\n", "z\n"}},
		{"a line one byte over the room", []string{"abc\n", "hijklm\n"}, []string{"abc\n", "hijklm\n"}},
		{"a partial line whose newline is one byte over", []string{"abc\n", "hijklm"}, []string{"abc\n", "hijklm\n"}},
		{"lines cut at the last newline that fits", []string{"abc\n", "de\nfgh\nij\n"}, []string{"abc\nde\n", "fgh\nij\n"}},
		{"an empty line that fits", []string{"abc\n", "\nxxxxxxxxx\n"}, []string{"abc\n\n", "xxxxxxxxx\n"}},
		{"a line longer than a batch", []string{"abc\n", "0123456789abcdef\n", "z\n"}, []string{"abc\n", "0123456789abcdef\n", "z\n"}},
		{"a partial line longer than a batch", []string{"0123456789abcdef", "z"}, []string{"0123456789abcdef\n", "z\n"}},
		{"partial lines", []string{"a", "b", "c"}, []string{"a\nb\nc\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &store{}
			cfg := fastConfig(t, st)
			cfg.BatchBytes = 10
			cfg.FlushInterval = time.Hour // batches close when full, or at Close
			s := New(context.Background(), cfg)
			for _, c := range tc.copies {
				if err := s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(c), nil); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, b := range st.batches {
				got = append(got, string(b.GetData()))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("batches (-want +got):\n%s", diff)
			}
			if s.unacked != 0 {
				t.Errorf("%d bytes unacknowledged after Close, want 0", s.unacked)
			}
		})
	}
}

// gatedStore is a store whose StreamLogs answers UNIMPLEMENTED only once
// open is closed: the shipper sends nothing until then.
type gatedStore struct {
	*store
	open chan struct{}
}

func (g gatedStore) StreamLogs(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[cloudmlv1.StreamLogsRequest, cloudmlv1.StreamLogsResponse], error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.store.StreamLogs(ctx, opts...)
}

// One call carries batches up to MaxCallBytes, and always at least one.
func TestCallBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxCall int
		want    [][]uint64 // the seqs of each call
	}{
		{"calls exactly full", 30, [][]uint64{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {10}}},
		{"calls one byte short of a batch", 29, [][]uint64{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}}},
		{"a batch larger than a call", 5, [][]uint64{{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &store{}
			var calls [][]uint64
			st.hook = func(_ int, req *cloudmlv1.PublishLogsRequest) error {
				var seqs []uint64
				for _, b := range req.GetBatches() {
					seqs = append(seqs, b.GetSeq())
				}
				calls = append(calls, seqs)
				return nil
			}
			gate := gatedStore{st, make(chan struct{})}
			cfg := fastConfig(t, st)
			cfg.Client = gate
			cfg.BatchBytes, cfg.MaxCallBytes, cfg.FlushInterval = 10, tc.maxCall, time.Hour
			s := New(context.Background(), cfg)
			out := strings.Repeat("012345678\n", 10) // ten full batches
			if err := s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(out), nil); err != nil {
				t.Fatal(err)
			}
			close(gate.open)
			if _, err := s.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, calls); diff != "" {
				t.Errorf("seqs per call (-want +got):\n%s", diff)
			}
			if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != out {
				t.Errorf("stored %q, want %q", got, out)
			}
		})
	}
}

// A coordinator acknowledging seqs not made yet (one that stored an earlier
// agent's batches) acknowledges only what exists: the batches made after
// are sent and acknowledged as usual, each once.
func TestAckPastWhatWasMade(t *testing.T) {
	st := &store{}
	var mu sync.Mutex
	calls := 0
	st.hook = func(_ int, req *cloudmlv1.PublishLogsRequest) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		if seq := req.GetBatches()[0].GetSeq(); seq <= uint64(len(st.batches)) {
			return status.Errorf(codes.FailedPrecondition, "batch %d sent again", seq)
		}
		return nil
	}
	pub := publisherFunc(func(ctx context.Context, req *cloudmlv1.PublishLogsRequest) (*cloudmlv1.PublishLogsResponse, error) {
		resp, err := st.PublishLogs(ctx, req)
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 1 && err == nil {
			resp.AckedSeq = 1000
		}
		return resp, err
	})
	cfg := fastConfig(t, st)
	cfg.Client = pub
	// Each line fills a batch and the window: the next line waits for its
	// acknowledgement, so the over-acknowledgement comes before batch 2.
	cfg.BatchBytes, cfg.MaxUnacked = 2, 2
	s := New(context.Background(), cfg)
	if err := s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, chunks("a\n", "b\n", "c\n"), nil); err != nil {
		t.Fatal(err)
	}
	last, err := s.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != "a\nb\nc\n" || last != 3 {
		t.Errorf("stored %q, last seq %d; want a, b, c and 3", got, last)
	}
}
