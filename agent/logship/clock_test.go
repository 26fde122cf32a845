package logship

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The tests in this file run in a synctest bubble: the clock is fake and
// moves only when every goroutine waits, so the timers (flush, stall,
// backoff) fire at exact instants, and synctest.Wait returns once the
// shipper has done all it can without more time or input.

// bubbleConfig is fastConfig with memCoord as the coordinator and a
// context that gives up after a fake minute.
func bubbleConfig(t *testing.T, c *memCoord) (context.Context, Config) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cfg := fastConfig(t, c.st)
	cfg.Client = c
	cfg.CallTimeout = 5 * time.Second
	cfg.FlushInterval = time.Hour
	return ctx, cfg
}

func storedCount(st *store) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.batches)
}

// A batch is sent when it is full, or FlushInterval after it opened.
func TestBatchClosesWhenFullOrFlushed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &memCoord{st: &store{}}
		ctx, cfg := bubbleConfig(t, c)
		cfg.BatchBytes, cfg.FlushInterval = 4, time.Second
		s := New(ctx, cfg)
		stdout := cloudmlv1.LogStream_LOG_STREAM_STDOUT
		s.Copy(stdout, strings.NewReader("abc\n"), nil) // full
		synctest.Wait()
		if n := storedCount(c.st); n != 1 {
			t.Fatalf("stored %d batches after a full one, want 1", n)
		}
		s.Copy(stdout, strings.NewReader("d\n"), nil)
		time.Sleep(cfg.FlushInterval - time.Nanosecond)
		synctest.Wait()
		if n := storedCount(c.st); n != 1 {
			t.Fatalf("stored %d batches before the flush, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := storedCount(c.st); n != 2 {
			t.Fatalf("stored %d batches at the flush, want 2", n)
		}
		if _, err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.st.text(t)[stdout]; got != "abc\nd\n" {
			t.Errorf("stored %q", got)
		}
	})
}

// Copy blocks once MaxUnacked bytes are unacknowledged, not one batch later.
func TestBackpressureAtMaxUnacked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Stream 1 stores but never acknowledges; after its stall, stream
		// 2 acknowledges everything.
		c := &memCoord{st: &store{}}
		c.serve = func(n int, ss *memServer) error {
			if n > 1 {
				return c.ackEach(n, ss)
			}
			for {
				req, err := ss.Recv()
				if err != nil {
					return err
				}
				c.answer(req)
			}
		}
		ctx, cfg := bubbleConfig(t, c)
		cfg.BatchBytes, cfg.MaxUnacked = 2, 4
		s := New(ctx, cfg)
		copied := make(chan error, 1)
		go func() { copied <- s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, chunks("a\n", "b\n", "c\n"), nil) }()
		synctest.Wait()
		select {
		case <-copied:
			t.Fatal("Copy finished with 6 bytes unacknowledged, MaxUnacked 4")
		default:
		}
		if n := storedCount(c.st); n != 2 {
			t.Errorf("stored %d batches before the first acknowledgement, want 2", n)
		}
		if err := <-copied; err != nil {
			t.Fatal(err)
		}
		if _, err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != "a\nb\nc\n" {
			t.Errorf("stored %q", got)
		}
	})
}

// A stream counts as stalled CallTimeout after the oldest unacknowledged
// batch was sent, or after the last acknowledgement that made progress;
// repeated acknowledgements do not keep it alive, and an idle stream with
// everything acknowledged is not stalled.
func TestStreamStallDeadline(t *testing.T) {
	const callTimeout = 5 * time.Second
	silent := func(ss *memServer) error {
		<-ss.Context().Done()
		return ss.Context().Err()
	}
	// pause waits d, or until the agent gives the stream up.
	pause := func(ss *memServer, d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ss.Context().Done():
			return ss.Context().Err()
		}
	}
	for _, tc := range []struct {
		name   string
		copies []string // one Copy each, with synctest.Wait after it
		idle   time.Duration
		// stream1 serves the first stream; later ones acknowledge each
		// request.
		stream1 func(c *memCoord, ss *memServer) error
		wantEnd time.Duration // when stream 1 ends
	}{
		{"silent after the first batch", []string{"a\n"}, 0, func(_ *memCoord, ss *memServer) error {
			ss.Recv()
			return silent(ss)
		}, callTimeout},
		{"silent after a partial acknowledgement", []string{"a\n", "b\n"}, 0, func(c *memCoord, ss *memServer) error {
			req1, _ := ss.Recv()
			ss.Recv()
			if err := pause(ss, time.Second); err != nil {
				return err
			}
			ss.Send(c.answer(req1))
			return silent(ss)
		}, time.Second + callTimeout},
		{"repeated acknowledgements of 0", []string{"a\n"}, 0, func(_ *memCoord, ss *memServer) error {
			ss.Recv()
			for range 3 {
				if err := pause(ss, callTimeout/2); err != nil {
					return err
				}
				ss.Send(&cloudmlv1.StreamLogsResponse{AckedSeq: 0})
			}
			return silent(ss)
		}, callTimeout},
		{"idle with everything acknowledged", []string{"a\n"}, 2 * callTimeout, func(c *memCoord, ss *memServer) error {
			return c.ackEach(1, ss)
		}, 2 * callTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var end time.Duration
				c := &memCoord{st: &store{}}
				c.serve = func(n int, ss *memServer) error {
					if n > 1 {
						return c.ackEach(n, ss)
					}
					defer func() { end = time.Since(start) }()
					return tc.stream1(c, ss)
				}
				ctx, cfg := bubbleConfig(t, c)
				cfg.BatchBytes, cfg.CallTimeout = 2, callTimeout
				s := New(ctx, cfg)
				var want strings.Builder
				for _, text := range tc.copies {
					s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(text), nil)
					want.WriteString(text)
					synctest.Wait()
				}
				time.Sleep(tc.idle)
				if _, err := s.Close(ctx); err != nil {
					t.Fatal(err)
				}
				synctest.Wait()
				if end != tc.wantEnd {
					t.Errorf("stream 1 ended at %v, want %v", end, tc.wantEnd)
				}
				if got := c.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; got != want.String() {
					t.Errorf("stored %q, want %q", got, want.String())
				}
			})
		})
	}
}
