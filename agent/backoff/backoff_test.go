package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNextIsCappedAndGrows(t *testing.T) {
	b := New(10*time.Millisecond, 80*time.Millisecond)
	ceilings := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, c := range ceilings {
		c *= time.Millisecond
		for range 50 {
			// Each call advances the sequence, so probe with a fresh copy.
			probe := *b
			if d := probe.Next(); d < 0 || d > c {
				t.Fatalf("call %d: delay %v outside [0, %v]", i, d, c)
			}
		}
		b.Next()
	}
	b.Reset()
	for range 50 {
		probe := *b
		if d := probe.Next(); d > 10*time.Millisecond {
			t.Fatalf("after reset: delay %v > 10ms", d)
		}
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
