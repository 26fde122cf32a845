package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// terminal is a pseudo-terminal of 160x40: programs write to tty, the
// test reads what they wrote with String.
type terminal struct {
	tty  *os.File
	ptmx *os.File
	done chan struct{}
	once sync.Once

	mu  sync.Mutex // protects buf
	buf bytes.Buffer
}

func openTerminal(t *testing.T) *terminal {
	t.Helper()
	ptmx, tty, err := pty.Open()
	testutil.NeedSystem(t, "a pseudo-terminal", err)
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160}); err != nil {
		t.Fatal(err)
	}
	term := &terminal{tty: tty, ptmx: ptmx, done: make(chan struct{})}
	go func() {
		io.Copy(term, ptmx) // ends with EIO once tty is closed
		close(term.done)
	}()
	t.Cleanup(func() { term.close() })
	return term
}

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.Write(p)
}

// String is what was written so far.
func (t *terminal) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}

// close closes the terminal and returns all that was written.
func (t *terminal) close() string {
	t.once.Do(func() {
		t.tty.Close()
		<-t.done
		t.ptmx.Close()
	})
	return t.String()
}

// watchJobs answers GetJob with the next of its jobs (the last one again
// once they run out), and ListNodes with one node.
type watchJobs struct {
	listJobs
	mu   sync.Mutex
	jobs []*cloudmlv1.Job
	gets int
}

func (w *watchJobs) GetJob(context.Context, *cloudmlv1.GetJobRequest) (*cloudmlv1.GetJobResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gets++
	j := w.jobs[0]
	if len(w.jobs) > 1 {
		w.jobs = w.jobs[1:]
	}
	return &cloudmlv1.GetJobResponse{Job: j}, nil
}

func watchJob(js cloudmlv1.JobState, ts cloudmlv1.TaskState) *cloudmlv1.Job {
	return &cloudmlv1.Job{Id: "j-1", State: js, TaskCount: 1, TaskStates: map[string]int32{taskState(ts): 1}, Output: "file:///out",
		Tasks: []*cloudmlv1.Task{{Index: 0, State: ts, NodeId: "node-1", Attempt: 1}}}
}

// script is a job that waits, runs (twice the same), then ends in final.
func script(final cloudmlv1.JobState, task cloudmlv1.TaskState) []*cloudmlv1.Job {
	return []*cloudmlv1.Job{
		watchJob(cloudmlv1.JobState_JOB_STATE_PENDING, cloudmlv1.TaskState_TASK_STATE_PENDING),
		watchJob(cloudmlv1.JobState_JOB_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_RUNNING),
		watchJob(cloudmlv1.JobState_JOB_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_RUNNING),
		watchJob(final, task),
	}
}

func TestStatusWatchRedrawsOnATerminalUntilTheJobEnds(t *testing.T) {
	srv := &watchJobs{jobs: script(cloudmlv1.JobState_JOB_STATE_FAILED, cloudmlv1.TaskState_TASK_STATE_FAILED)}
	term := openTerminal(t)
	a, _, errb := app(fakeServer(t, srv), nil)
	a.Stdout, a.WatchInterval = term.tty, time.Millisecond
	code := a.Run(t.Context(), []string{"status", "j-1", "--watch"})
	out := term.close()
	if code != ExitJobFailed {
		t.Errorf("status --watch of a job that failed: exit %d, want %d; stderr %q", code, ExitJobFailed, errb.String())
	}
	if n := strings.Count(out, "job j-1: "); n != 4 || strings.Count(out, "\x1b[J") != 4 {
		t.Errorf("%d snapshots drawn (want 4, each over the last):\n%q", n, out)
	}
	// Each redraw moves up over the 4 lines of the last snapshot.
	if strings.Count(out, "\x1b[4A") != 3 || !strings.Contains(out, "job j-1: failed") || !strings.Contains(out, "node-1 (gpu-a)") {
		t.Errorf("redraws do not replace the last snapshot, or the job did not end:\n%q", out)
	}
	if srv.gets != 4 {
		t.Errorf("the job was read %d times, want 4 (the watch ends when the job does)", srv.gets)
	}
}

func TestStatusWatchOffATerminalPrintsEachChange(t *testing.T) {
	srv := &watchJobs{jobs: script(cloudmlv1.JobState_JOB_STATE_SUCCEEDED, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED)}
	a, out, _ := app(fakeServer(t, srv), nil)
	a.WatchInterval = time.Millisecond
	if code := a.Run(t.Context(), []string{"status", "--watch", "j-1"}); code != ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
	got := out.String()
	if n := strings.Count(got, "job j-1: "); n != 3 || strings.Contains(got, "\x1b") {
		t.Errorf("want 3 snapshots (the repeated one left out), no escapes:\n%s", got)
	}
	for _, state := range []string{"pending", "running", "succeeded"} {
		if !strings.Contains(got, "job j-1: "+state) {
			t.Errorf("no snapshot of the job %s:\n%s", state, got)
		}
	}
}

func TestListWatchRunsUntilInterrupted(t *testing.T) {
	term := openTerminal(t)
	a, _, _ := app(fakeServer(t, &watchJobs{}), nil)
	a.Stdout, a.WatchInterval = term.tty, time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	codes := make(chan int, 1)
	go func() { codes <- a.Run(ctx, []string{"list", "-w"}) }()
	// Let it redraw a few times; an interrupt (Ctrl-C) ends it with exit 0.
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(term.String(), "\x1b[3A") < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-codes; code != ExitOK {
		t.Errorf("list --watch interrupted: exit %d, want 0", code)
	}
	if out := term.close(); strings.Count(out, "\x1b[3A") < 3 || !strings.Contains(out, "b-222222") {
		t.Errorf("list --watch did not redraw the 3-line list:\n%q", out)
	}
}
