package logship

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The backoff grows over streams that break without progress. Its delays
// are random in [0, ceiling]: with BackoffMax an hour the ceiling passes
// an hour after 22 failures, so 30 of them waiting no more than
// BackoffMin each on the fake clock means it was reset every time (the
// chance otherwise is below 1e-40).
func TestBackoffGrowsWithoutProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const failures = 30
		c := &memCoord{st: &store{}}
		var opened []time.Time
		c.serve = func(n int, ss *memServer) error {
			opened = append(opened, time.Now())
			if n <= failures {
				return status.Error(codes.Unavailable, "coordinator restarting")
			}
			return c.ackEach(n, ss)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1000*time.Hour)
		defer cancel()
		cfg := fastConfig(t, c.st)
		cfg.Client = c
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, time.Hour
		s := New(ctx, cfg)
		s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader("a\n"), nil)
		if _, err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if len(opened) != failures+1 {
			t.Fatalf("%d streams, want %d", len(opened), failures+1)
		}
		if waited := opened[failures].Sub(opened[0]); waited <= failures*cfg.BackoffMin {
			t.Errorf("waited %v over %d failures without progress: the backoff did not grow", waited, failures)
		}
	})
}

// Calls that the coordinator acknowledges follow each other at once: the
// backoff is only for calls that failed or made no progress.
func TestPublishAcknowledgedWithoutBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &store{} // no StreamLogs: one PublishLogs call at a time
		ctx, cancel := context.WithTimeout(context.Background(), 1000*time.Hour)
		defer cancel()
		cfg := fastConfig(t, st)
		// One batch per call, so each call's acknowledgement is its first seq.
		cfg.BatchBytes, cfg.MaxCallBytes = 2, 2
		cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour
		start := time.Now()
		s := New(ctx, cfg)
		s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader("a\nb\nc\n"), nil)
		if _, err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("shipping took %v on the fake clock, want no backoff at all", d)
		}
		if st.calls != 3 || st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != "a\nb\nc\n" {
			t.Errorf("%d calls stored %q, want 3 storing a, b, c", st.calls, st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT])
		}
	})
}
