package agent

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestNextBeatCountsFromTheCallsStart: the next heartbeat is due an
// interval after the last one began, so a slow answer does not widen the
// gap the coordinator sees; one slower than the interval is followed at
// once.
func TestNextBeatCountsFromTheCallsStart(t *testing.T) {
	for _, tc := range []struct {
		interval, elapsed, want time.Duration
	}{
		{2 * time.Second, 0, 2 * time.Second},
		{2 * time.Second, 300 * time.Millisecond, 1700 * time.Millisecond},
		{2 * time.Second, 2 * time.Second, 0},
		{2 * time.Second, 5 * time.Second, 0},
		{500 * time.Millisecond, 100 * time.Millisecond, 400 * time.Millisecond},
	} {
		if got := nextBeat(tc.interval, tc.elapsed); got != tc.want {
			t.Errorf("nextBeat(%s, %s) = %s, want %s", tc.interval, tc.elapsed, got, tc.want)
		}
	}
}

// beatCounter is a client whose Heartbeat counts calls and returns err.
type beatCounter struct {
	cloudmlv1.AgentServiceClient
	calls int
	err   error
}

func (b *beatCounter) Heartbeat(ctx context.Context, in *cloudmlv1.HeartbeatRequest, opts ...grpc.CallOption) (*cloudmlv1.HeartbeatResponse, error) {
	b.calls++
	if b.err != nil {
		return nil, b.err
	}
	return &cloudmlv1.HeartbeatResponse{Period: durationpb.New(time.Second)}, nil
}

// TestBeatsGoToThePulseAndFallBack: with a pulse, heartbeats go there
// alone; when it fails, that beat and the next ones go on the session's
// connection, without trying the pulse again until pulseRest has passed.
func TestBeatsGoToThePulseAndFallBack(t *testing.T) {
	pulse, session := &beatCounter{}, &beatCounter{}
	b := beatClients{pulse: pulse, session: session, log: hclog.NewNullLogger()}
	ctx := context.Background()
	for range 3 {
		if _, err := b.call(ctx, &cloudmlv1.HeartbeatRequest{}, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if pulse.calls != 3 || session.calls != 0 {
		t.Fatalf("pulse %d calls, session %d; want 3 and 0", pulse.calls, session.calls)
	}
	pulse.err = status.Error(codes.Unavailable, "connection refused")
	for range 2 {
		if _, err := b.call(ctx, &cloudmlv1.HeartbeatRequest{}, time.Second); err != nil {
			t.Fatalf("a beat the pulse failed was not sent on the session: %v", err)
		}
	}
	if pulse.calls != 4 || session.calls != 2 {
		t.Errorf("after the pulse failed: pulse %d calls, session %d; want 4 (one failure, then rest) and 2", pulse.calls, session.calls)
	}
	pulse.err = nil
	b.pulseOff = time.Now().Add(-time.Millisecond) // the rest is over
	if _, err := b.call(ctx, &cloudmlv1.HeartbeatRequest{}, time.Second); err != nil {
		t.Fatal(err)
	}
	if pulse.calls != 5 || session.calls != 2 {
		t.Errorf("after the rest: pulse %d calls, session %d; want 5 and 2", pulse.calls, session.calls)
	}
	// No pulse: the session's connection.
	plain := beatClients{session: session, log: hclog.NewNullLogger()}
	if _, err := plain.call(ctx, &cloudmlv1.HeartbeatRequest{}, time.Second); err != nil || session.calls != 3 {
		t.Errorf("without a pulse: %v, session %d calls, want 3", err, session.calls)
	}
}
