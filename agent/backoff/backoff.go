// Package backoff computes the agent's retry delays: capped exponential
// growth with full jitter, so that many agents reconnecting to a restarted
// coordinator spread out instead of arriving together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields successive delays between Min and Max. The zero value is
// not usable; build one with New. It is not safe for concurrent use.
type Backoff struct {
	min, max time.Duration
	attempt  int
}

// New returns a Backoff whose first delay is at most min and whose delays
// never exceed max.
func New(min, max time.Duration) *Backoff {
	if min <= 0 {
		min = time.Millisecond
	}
	if max < min {
		max = min
	}
	return &Backoff{min: min, max: max}
}

// Next returns the next delay: uniform in [0, min(max, min*2^n)], where n
// counts the calls since the last Reset.
func (b *Backoff) Next() time.Duration {
	ceil := b.min
	for i := 0; i < b.attempt && ceil < b.max; i++ {
		ceil *= 2
	}
	if ceil > b.max {
		ceil = b.max
	}
	b.attempt++
	return rand.N(ceil + 1)
}

// Reset starts the sequence again from min.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps for the next delay or until ctx is done; it returns ctx's
// error in the latter case.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
