package logship

import (
	"strings"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// carryConfig ships to f and may leave up to carry bytes for the end
// report; batches close only when full or at Close.
func carryConfig(t *testing.T, f *streamServer, carry int) Config {
	cfg := streamConfig(t, f)
	cfg.CarryBytes, cfg.CarryWait, cfg.FlushInterval = carry, time.Minute, time.Minute
	return cfg
}

func (f *streamServer) streamCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.streams
}

// copyAll feeds s stdout and stderr to their ends.
func copyAll(s *Shipper, stdout, stderr string) {
	done := make(chan struct{})
	go func() { s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDERR, strings.NewReader(stderr), nil); close(done) }()
	s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(stdout), nil)
	<-done
}

// TestCarryTakesOutputThatNeverLeft: an attempt whose output is all still
// on the node at Close hands it to its end report: Close returns at once,
// Carry returns every batch, and no stream or call is made.
func TestCarryTakesOutputThatNeverLeft(t *testing.T) {
	f := &streamServer{st: &store{}}
	// CarryBytes is exactly the output: at most that much is carried.
	s := New(ctxT(t), carryConfig(t, f, len("hello\nworld\n")))
	// One stream: a switch between stdout and stderr closes a batch, which
	// the sender may ship at once.
	copyAll(s, "hello\nworld\n", "")
	last, err := s.Close(ctxT(t))
	if err != nil || last != 1 {
		t.Fatalf("Close = %d, %v; want 1 batch and no error", last, err)
	}
	got, err := s.Carry(ctxT(t), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetSeq() != 1 || got[0].GetStream() != cloudmlv1.LogStream_LOG_STREAM_STDOUT || string(got[0].GetData()) != "hello\nworld\n" {
		t.Errorf("carried %v, want batch 1 of stdout with both lines", got)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the sender did not stop once the batches were carried")
	}
	if n, calls := f.streamCount(), f.st.calls; n != 0 || calls != 0 {
		t.Errorf("%d streams and %d calls for carried output, want none", n, calls)
	}
}

// TestNoOutputOpensNoStream: an attempt that printed nothing costs the
// coordinator no stream.
func TestNoOutputOpensNoStream(t *testing.T) {
	f := &streamServer{st: &store{}}
	s := New(ctxT(t), streamConfig(t, f))
	copyAll(s, "", "")
	if last, err := s.Close(ctxT(t)); err != nil || last != 0 {
		t.Fatalf("Close = %d, %v; want 0 and no error", last, err)
	}
	if n := f.streamCount(); n != 0 {
		t.Errorf("%d streams for no output, want 0", n)
	}
}

// TestHeldOutputIsShippedWhenNotTaken: batches Close held are shipped once
// CarryWait passes without Carry (a slow upload of results), and Carry
// then returns none, after their acknowledgement.
func TestHeldOutputIsShippedWhenNotTaken(t *testing.T) {
	f := &streamServer{st: &store{}}
	cfg := carryConfig(t, f, 64<<10)
	cfg.CarryWait = 20 * time.Millisecond
	s := New(ctxT(t), cfg)
	copyAll(s, "late\n", "")
	if last, err := s.Close(ctxT(t)); err != nil || last != 1 {
		t.Fatalf("Close = %d, %v", last, err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("held batches were not shipped after CarryWait")
	}
	got, err := s.Carry(ctxT(t), true)
	if err != nil || got != nil {
		t.Fatalf("Carry after the wait = %v, %v; want none", got, err)
	}
	if text := f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; text != "late\n" || f.st.dupes != 0 {
		t.Errorf("stored %q with %d duplicates, want %q once", text, f.st.dupes, "late\n")
	}
}

// TestOnlyOutputThatNeverLeftIsCarried: once a batch was shipped, or when
// the output is over CarryBytes, Close ships the rest itself.
func TestOnlyOutputThatNeverLeftIsCarried(t *testing.T) {
	for _, tc := range []struct {
		name        string
		carry       int
		first, rest string
	}{
		{"a batch left before Close", 64 << 10, strings.Repeat("x", 4<<10) + "\n", "tail\n"}, // the first fills a batch
		{"more than CarryBytes", 16, "", "seventeen bytes!\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &streamServer{st: &store{}}
			s := New(ctxT(t), carryConfig(t, f, tc.carry))
			if tc.first != "" {
				s.Copy(cloudmlv1.LogStream_LOG_STREAM_STDOUT, strings.NewReader(tc.first), nil)
				for f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT] != tc.first {
					time.Sleep(time.Millisecond) // polling interval
				}
			}
			copyAll(s, tc.rest, "")
			last, err := s.Close(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := s.Carry(ctxT(t), true); err != nil || got != nil {
				t.Fatalf("Carry = %d batches, %v; want none", len(got), err)
			}
			if text := f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; text != tc.first+tc.rest || int(last) != len(f.st.batches) {
				t.Errorf("stored %q in %d batches (last seq %d), want all of it", text, len(f.st.batches), last)
			}
		})
	}
}

// TestHeldOutputIsShippedWhenTheReportCannotCarryIt: Carry(take false),
// for a coordinator that stopped taking logs in reports (an older one
// after a restart), ships what Close held and returns none once it is
// acknowledged.
func TestHeldOutputIsShippedWhenTheReportCannotCarryIt(t *testing.T) {
	f := &streamServer{st: &store{}}
	s := New(ctxT(t), carryConfig(t, f, 64<<10))
	copyAll(s, "kept\n", "")
	if last, err := s.Close(ctxT(t)); err != nil || last != 1 {
		t.Fatalf("Close = %d, %v", last, err)
	}
	got, err := s.Carry(ctxT(t), false)
	if err != nil || got != nil {
		t.Fatalf("Carry(false) = %v, %v; want none", got, err)
	}
	if text := f.st.text(t)[cloudmlv1.LogStream_LOG_STREAM_STDOUT]; text != "kept\n" || f.st.dupes != 0 {
		t.Errorf("stored %q with %d duplicates, want %q once, before Carry returned", text, f.st.dupes, "kept\n")
	}
}
