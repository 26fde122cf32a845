package local

import (
	"context"
	"errors"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

const ms = time.Millisecond

// The delays double from Min while the process keeps exiting, stop at
// Max, and start again from Min after a run that lasted StableAfter.
func TestRestartPolicyNext(t *testing.T) {
	p := RestartPolicy{Min: 10 * ms, Max: 50 * ms, StableAfter: time.Minute}
	ran := []time.Duration{0, 0, 0, 0, 0, time.Minute - 1, time.Minute, 2 * time.Second, 5 * time.Minute, 0}
	want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 50 * ms, 50 * ms, 50 * ms, 10 * ms, 20 * ms, 10 * ms, 20 * ms}
	var got []time.Duration
	var delay time.Duration
	for _, r := range ran {
		delay = p.Next(delay, r)
		got = append(got, delay)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays after runs of %v (-want +got):\n%s", ran, diff)
	}
}

func TestRestartPolicyValidate(t *testing.T) {
	for _, p := range []RestartPolicy{{Min: -1}, {Max: -1}, {StableAfter: -1}, {Min: 2 * time.Second, Max: time.Second}} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
	var p RestartPolicy
	if err := p.Validate(); err != nil || p != DefaultRestartPolicy() {
		t.Errorf("Validate of the zero policy: %v, %+v; want %+v", err, p, DefaultRestartPolicy())
	}
	p = RestartPolicy{Min: time.Minute}
	if err := p.Validate(); err != nil || p.Max != time.Minute {
		t.Errorf("Validate of min 1m alone: %v, %+v; want max 1m", err, p)
	}
	if def := (RestartPolicy{Min: time.Second, Max: 30 * time.Second, StableAfter: time.Minute}); DefaultConfig().Restart != def {
		t.Errorf("DefaultConfig().Restart = %+v, want %+v", DefaultConfig().Restart, def)
	}
}

// fakeClock is a clock whose time moves only when the test moves it and
// whose waits hand each delay to the test instead of sleeping.
type fakeClock struct {
	mu    sync.Mutex // protects t
	t     time.Time
	waits chan time.Duration
}

func (f *fakeClock) clock() clock {
	return clock{
		now: func() time.Time {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.t
		},
		wait: func(ctx context.Context, d time.Duration) bool {
			select {
			case f.waits <- d:
				return true
			case <-ctx.Done():
				return false
			}
		},
	}
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

// A real process that keeps exiting is restarted after 10, 20, 40 and 40
// ms (capped); one that ran for StableAfter is restarted after 10 ms again.
func TestSuperviseRestartsWithThePolicysDelays(t *testing.T) {
	sh := testutil.NeedBinary(t, "sh")
	fc := &fakeClock{t: time.Unix(1e9, 0), waits: make(chan time.Duration)}
	var starts atomic.Int32
	newCmd := func() (*exec.Cmd, error) {
		switch starts.Add(1) {
		case 1, 2, 3, 4, 6: // crashes at once
			return exec.Command(sh, "-c", "exit 3"), nil
		default: // runs until killed or stopped
			return exec.Command(sh, "-c", "exec sleep 1000"), nil
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	policy := RestartPolicy{Min: 10 * ms, Max: 40 * ms, StableAfter: time.Hour}
	s, err := supervise(ctx, testutil.Logger(t), policy, newCmd, fc.clock())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Wait()
	defer cancel()
	next := func() time.Duration {
		t.Helper()
		select {
		case d := <-fc.waits:
			return d
		case <-time.After(15 * time.Second):
			t.Fatalf("no restart after %d starts", starts.Load())
			return 0
		}
	}
	var got []time.Duration
	for range 4 {
		got = append(got, next())
	}
	// The fifth start runs: its start time is taken before its pid is
	// published, so the clock moves during its run.
	var pid int
	testutil.Eventually(t, 15*time.Second, 5*ms, "the fifth start runs", func() error {
		if pid = s.PID(); pid == 0 {
			return errors.New("no process runs")
		}
		return nil
	})
	fc.advance(time.Hour)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got = append(got, next(), next())
	want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 40 * ms, 10 * ms, 20 * ms}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restart delays (-want +got):\n%s", diff)
	}
	testutil.Eventually(t, 15*time.Second, 5*ms, "the seventh start runs", func() error {
		if s.PID() == 0 {
			return errors.New("no process runs")
		}
		return nil
	})
	cancel()
	s.Wait()
	if n := starts.Load(); n != 7 {
		t.Errorf("%d starts, want 7", n)
	}
}
