package agent

import (
	"testing"
	"time"
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
