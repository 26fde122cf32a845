package backoff

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// probes is how many delays each step draws from a copy of the sequence.
// A delay is uniform in [0, ceiling] (full jitter), so it lands in either
// half of the ceiling with probability 1/2; all probes missing one half has
// probability 2^-64, which the checks below treat as impossible.
const probes = 64

// sample draws probes delays of b's next step without advancing b. It
// fails the test if one is outside [0, ceiling], or if none is in the
// lower half (no jitter) or none in the upper half (the step's ceiling not
// reached: no growth) of [0, ceiling].
func sample(t *testing.T, b *Backoff, step string, ceiling time.Duration) {
	t.Helper()
	least, most := ceiling, time.Duration(0)
	for range probes {
		probe := *b
		d := probe.Next()
		if d < 0 || d > ceiling {
			t.Fatalf("%s: delay %v outside [0, %v]", step, d, ceiling)
		}
		least, most = min(least, d), max(most, d)
	}
	half := ceiling / 2
	if most <= half {
		t.Errorf("%s: largest of %d delays %v <= %v; want some in (%v, %v]", step, probes, most, half, half, ceiling)
	}
	if least >= half {
		t.Errorf("%s: smallest of %d delays %v >= %v; want some in [0, %v) (full jitter)", step, probes, least, half, half)
	}
}

// TestNextIsCappedAndGrows checks each step's delays against its ceiling
// (see sample): the ceiling starts at min, doubles up to the cap, stays at
// the cap however many calls follow, and Reset brings it back to min. The
// caps are one that doubling reaches exactly and one it overshoots.
func TestNextIsCappedAndGrows(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		min, max time.Duration
		ceilings []time.Duration
	}{
		{10 * ms, 80 * ms, []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms}},
		{10 * ms, 60 * ms, []time.Duration{10 * ms, 20 * ms, 40 * ms, 60 * ms}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v-%v", tt.min, tt.max), func(t *testing.T) {
			b := New(tt.min, tt.max)
			for i, c := range tt.ceilings {
				sample(t, b, fmt.Sprintf("call %d", i), c)
				b.Next()
			}
			// Long past the cap the ceiling neither overflows nor falls back.
			for i := len(tt.ceilings); i < 1000 && !t.Failed(); i++ {
				sample(t, b, fmt.Sprintf("call %d", i), tt.max)
				b.Next()
			}

			b.Reset()
			for i, c := range tt.ceilings {
				sample(t, b, fmt.Sprintf("after reset, call %d", i), c)
				b.Next()
			}
		})
	}
}

func TestWaitStopsOnCancel(t *testing.T) {
	b := New(time.Hour, time.Hour)
	b.attempt = 10
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}
