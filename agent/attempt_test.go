package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/agent/internal/membucket"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// memSetup is an agent on the fake coordinator with an in-memory bucket
// holding a small code archive.
type memSetup struct {
	f    *fakeCoord
	b    *membucket.Bucket
	r    *runningAgent
	code *cloudmlv1.Source
}

func newMemSetup(t *testing.T, mod func(*Config)) *memSetup {
	f, dial := newFakeCoord(t)
	b := membucket.New("b")
	code := packCode(t, b, map[string]string{"run.sh": "#!/bin/sh\necho from code\n"})
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.OpenBucket = b.Opener()
	if mod != nil {
		mod(&cfg)
	}
	return &memSetup{f: f, b: b, r: startAgent(t, cfg), code: code}
}

func (s *memSetup) asg(rf *cloudmlv1.TaskRef, cmd ...string) *cloudmlv1.Assignment {
	return &cloudmlv1.Assignment{Ref: rf, TaskCount: 1, Command: cmd, Code: s.code, Output: "mem://b/out"}
}

func TestLogsEveryLineOnceDespiteALostResponse(t *testing.T) {
	s := newMemSetup(t, nil)
	s.f.mu.Lock()
	s.f.failPublish = func(call int) bool { return call == 2 }
	s.f.mu.Unlock()
	rf := ref("seq", 0, 1)
	// 500,000 lines are 3.4 MB, more than one call carries (2 MiB), so a
	// second call happens however fast the command ends.
	const lines = 500000
	s.f.assign(t, s.asg(rf, "seq", fmt.Sprint(lines)))
	end := s.f.waitFinal(t, rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end = %v", end)
	}
	stdout, _, batches := s.f.logText(rf)
	var want strings.Builder
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	if stdout != want.String() {
		t.Fatalf("stored stdout is %d bytes, want %d: lines lost, reordered or duplicated", len(stdout), want.Len())
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.dupes == 0 {
		t.Errorf("no batch was resent after the lost response")
	}
	if end.GetLastLogSeq() != uint64(batches) {
		t.Errorf("last_log_seq = %d, stored %d batches", end.GetLastLogSeq(), batches)
	}
	for i, b := range s.f.logs[keyOf(rf)] {
		if b.GetSeq() != uint64(i+1) {
			t.Fatalf("batch %d has seq %d", i, b.GetSeq())
		}
	}
}

// TestShortOutputRidesTheEndReport: when the coordinator takes logs in
// reports, a task whose output is all still on the node when it ends sends
// it with its end report, and makes no log call; a longer one ships as
// before.
func TestShortOutputRidesTheEndReport(t *testing.T) {
	s := newMemSetup(t, nil)
	s.f.mu.Lock()
	s.f.reportLogs = true
	s.f.mu.Unlock()
	s.f.dropSession() // the next session offers report_logs
	short := ref("short", 0, 1)
	s.f.assign(t, s.asg(short, "sh", "-c", "echo hi; echo there"))
	end := s.f.waitFinal(t, short)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || end.GetLastLogSeq() != 1 || len(end.GetLogBatches()) != 1 {
		t.Fatalf("end = %v, want SUCCEEDED carrying batch 1", end)
	}
	stdout, _, _ := s.f.logText(short)
	s.f.mu.Lock()
	publishes := s.f.publishes
	s.f.mu.Unlock()
	if stdout != "hi\nthere\n" || publishes != 0 {
		t.Errorf("stored %q after %d log calls, want %q and none", stdout, publishes, "hi\nthere\n")
	}

	// 500,000 lines leave in batches while the command runs.
	long := ref("long", 0, 1)
	s.f.assign(t, s.asg(long, "seq", "500000"))
	end = s.f.waitFinal(t, long)
	stdout, _, batches := s.f.logText(long)
	if len(end.GetLogBatches()) != 0 || end.GetLastLogSeq() != uint64(batches) || strings.Count(stdout, "\n") != 500000 {
		t.Errorf("long output: end carried %d batches, last_log_seq %d, stored %d batches with %d lines; want none carried and every line stored",
			len(end.GetLogBatches()), end.GetLastLogSeq(), batches, strings.Count(stdout, "\n"))
	}
}

// slowBucket opens every object after a delay.
type slowBucket struct {
	bucket.Bucket
	delay time.Duration
}

func (b slowBucket) NewReader(ctx context.Context, key string) (io.ReadCloser, error) {
	time.Sleep(b.delay)
	return b.Bucket.NewReader(ctx, key)
}

// TestStagingReportedOnlyWhenItTakesAWhile: STAGING is reported only once
// staging has taken StagingDelay; a task that starts sooner reports
// RUNNING and its end, one report fewer for the coordinator.
func TestStagingReportedOnlyWhenItTakesAWhile(t *testing.T) {
	staging, running, succeeded := cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED
	for _, tc := range []struct {
		name  string
		delay time.Duration // StagingDelay
		slow  time.Duration // each bucket read
		want  []cloudmlv1.TaskState
	}{
		{"staging ends within the delay", 10 * time.Second, 0, []cloudmlv1.TaskState{running, succeeded}},
		{"staging takes longer", time.Millisecond, 300 * time.Millisecond, []cloudmlv1.TaskState{staging, running, succeeded}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemSetup(t, func(c *Config) {
				c.StagingDelay = tc.delay
				open := c.OpenBucket
				c.OpenBucket = func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
					b, loc, err := open(ctx, rawURL)
					return slowBucket{b, tc.slow}, loc, err
				}
			})
			rf := ref("staging", 0, 1)
			s.f.assign(t, s.asg(rf, "true"))
			s.f.waitFinal(t, rf)
			if got := s.f.states(rf); !slices.Equal(got, tc.want) {
				t.Errorf("reported %v, want %v", got, tc.want)
			}
		})
	}
}

// taskSharedDir is a directory a test and its tasks share. Tasks run as
// another user (nobody, when the tests run as root) and see nothing of the
// test's 0700 temporary dirs, so it is world-writable and outside them.
func taskSharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cloudml-agent-test-")
	if err == nil {
		err = os.Chmod(dir, 0o777)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestSameAssignmentRunsOnce(t *testing.T) {
	s := newMemSetup(t, nil)
	marker := filepath.Join(taskSharedDir(t), "runs")
	rf := ref("once", 0, 1)
	a := s.asg(rf, "sh", "-c", "echo run >> "+marker)
	s.f.assign(t, a)
	s.f.waitFinal(t, rf)
	s.f.assign(t, a)
	// Commands are handled in order: once this one ends, the repeat was seen.
	rf2 := ref("once", 1, 1)
	s.f.assign(t, s.asg(rf2, "true"))
	s.f.waitFinal(t, rf2)
	data, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "run\n" {
		t.Errorf("marker = %q, want one run", data)
	}
	if got := len(s.f.states(rf)); got != 3 {
		t.Errorf("reports for the attempt = %d, want 3", got)
	}
}

func TestAttemptFailures(t *testing.T) {
	s := newMemSetup(t, nil)
	hostile := tgzHostile(t)
	s.b.Set("code/hostile.tar.gz", hostile.data)
	s.b.Set("loose/ok.sh", []byte("echo ok\n"))
	s.b.Set("loose/a/../../../etc/evil", []byte("x"))
	tests := []struct {
		name     string
		asg      func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment
		state    cloudmlv1.TaskState
		exitCode int32
		msg      string
	}{
		{"not found", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment { return s.asg(rf, "no-such-command-xyz") },
			cloudmlv1.TaskState_TASK_STATE_FAILED, -1, `command "no-such-command-xyz" not found (not on PATH and not in the code directory)`},
		{"nonzero exit", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			return s.asg(rf, "sh", "-c", "echo boom >&2; exit 3")
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, 3, `exited with code 3; last stderr line: "boom"`},
		{"timeout", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			a := s.asg(rf, "sleep", "30")
			a.Timeout = durationpb.New(200 * time.Millisecond)
			return a
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, -1, "timed out after 200ms"},
		{"missing code", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			a := s.asg(rf, "true")
			a.Code = &cloudmlv1.Source{Url: "mem://b/code/sha256-0000.tar.gz", Digest: "sha256:" + strings.Repeat("0", 64)}
			return a
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, -1,
			`stage code: object "code/sha256-0000.tar.gz" does not exist in mem://b/: was it uploaded? resubmit with --code DIR`},
		{"hostile archive", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			a := s.asg(rf, "true")
			a.Code = &cloudmlv1.Source{Url: "mem://b/code/hostile.tar.gz", Digest: hostile.digest}
			return a
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, -1, "unsafe path"},
		{"hostile object key", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			a := s.asg(rf, "true")
			a.Code = &cloudmlv1.Source{Url: "mem://b/loose"}
			return a
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, -1, "unsafe path"},
		{"missing data", func(rf *cloudmlv1.TaskRef) *cloudmlv1.Assignment {
			a := s.asg(rf, "true")
			a.Data = map[string]*cloudmlv1.Source{"d": {Url: "mem://b/nothing"}}
			return a
		}, cloudmlv1.TaskState_TASK_STATE_FAILED, -1, `stage data "d": no objects under mem://b/nothing`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rf := ref("fail", int32(i), 1)
			s.f.assign(t, tt.asg(rf))
			end := s.f.waitFinal(t, rf)
			if end.GetState() != tt.state || end.GetExitCode() != tt.exitCode {
				t.Errorf("end = %v %d, want %v %d", end.GetState(), end.GetExitCode(), tt.state, tt.exitCode)
			}
			if !strings.Contains(end.GetMessage(), tt.msg) {
				t.Errorf("message = %q, want it to contain %q", end.GetMessage(), tt.msg)
			}
			if _, ok := s.b.Get(fmt.Sprintf("out/results/fail/%d/1/manifest.json", i)); !ok {
				t.Errorf("no manifest for the failed attempt")
			}
		})
	}
	if _, ok := s.b.Get("etc/evil"); ok {
		t.Error("hostile key escaped")
	}
}

func TestMalformedMetricsIsAWarning(t *testing.T) {
	s := newMemSetup(t, nil)
	rf := ref("metrics", 0, 1)
	s.f.assign(t, s.asg(rf, "sh", "-c", `echo '{"loss": "low"}' > $CLOUDML_OUTPUT_DIR/metrics.json`))
	end := s.f.waitFinal(t, rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || len(end.GetMetrics()) != 0 {
		t.Fatalf("end = %v", end)
	}
	if !strings.Contains(end.GetMessage(), `warning: metrics.json: "loss" is "low", not a number`) {
		t.Errorf("message = %q", end.GetMessage())
	}
}

func TestCancelStopsTheTask(t *testing.T) {
	s := newMemSetup(t, nil)
	for i, script := range []string{
		"echo started; sleep 30",
		"trap '' TERM; echo started; sleep 30", // needs the SIGKILL
	} {
		rf := ref("cancel", int32(i), 1)
		s.f.assign(t, s.asg(rf, "sh", "-c", script))
		s.f.wait(t, "output", func() bool { return len(s.f.logs[keyOf(rf)]) > 0 })
		s.f.send(t, &cloudmlv1.SessionResponse{Command: &cloudmlv1.SessionResponse_Cancel{Cancel: &cloudmlv1.Cancel{Ref: rf, Reason: "user asked"}}})
		end := s.f.waitFinal(t, rf)
		if end.GetState() != cloudmlv1.TaskState_TASK_STATE_CANCELLED || end.GetMessage() != "cancelled: user asked" {
			t.Errorf("%q: end = %v %q", script, end.GetState(), end.GetMessage())
		}
	}
}

func TestRejectedAttemptIsDropped(t *testing.T) {
	for _, logs := range []bool{false, true} {
		t.Run(fmt.Sprintf("by logs %v", logs), func(t *testing.T) { testRejected(t, logs) })
	}
}

func testRejected(t *testing.T, byLogs bool) {
	s := newMemSetup(t, nil)
	s.f.mu.Lock()
	s.f.rejectLogs = byLogs
	s.f.rejectReport = func(r *cloudmlv1.ReportTaskRequest) bool {
		return !byLogs && r.GetState() == cloudmlv1.TaskState_TASK_STATE_RUNNING
	}
	s.f.mu.Unlock()
	rf := ref("rejected", 0, 1)
	s.f.assign(t, s.asg(rf, "sh", "-c", "echo started; sleep 30"))
	deadline := time.Now().Add(20 * time.Second)
	known := func() int {
		s.r.mu.Lock()
		defer s.r.mu.Unlock()
		return len(s.r.attempts)
	}
	for len(s.r.running()) != 0 || known() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("rejected attempt still running")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if end := s.f.final(rf); end != nil {
		t.Errorf("a dropped attempt reported %v", end)
	}
}

func TestReconnectKeepsAttemptsRunning(t *testing.T) {
	s := newMemSetup(t, nil)
	marker := filepath.Join(taskSharedDir(t), "go")
	rf := ref("reconnect", 0, 1)
	// The task waits for the marker, so it is running across the reconnect.
	s.f.assign(t, s.asg(rf, "sh", "-c", "echo waiting; while [ ! -e "+marker+" ]; do sleep 0.01; done; echo done"))
	s.f.wait(t, "output", func() bool { return len(s.f.logs[keyOf(rf)]) > 0 })
	s.f.dropSession()
	s.f.wait(t, "a second session", func() bool { return len(s.f.sessionReqs) == 2 })
	s.f.mu.Lock()
	running := s.f.sessionReqs[1].GetRunning()
	s.f.mu.Unlock()
	if len(running) != 1 || keyOf(running[0]) != keyOf(rf) {
		t.Errorf("second session running = %v, want the attempt", running)
	}
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	end := s.f.waitFinal(t, rf)
	stdout, _, _ := s.f.logText(rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || stdout != "waiting\ndone\n" {
		t.Errorf("end = %v, stdout = %q", end.GetState(), stdout)
	}
}

// Shutdown kills an attempt that ignores SIGTERM instead of waiting for
// it: the task is gone when Run returns, before it could write its marker.
func TestShutdownStopsAttempts(t *testing.T) {
	s := newMemSetup(t, nil)
	rf := ref("shutdown", 0, 1)
	marker := filepath.Join(taskSharedDir(t), "finished")
	s.f.assign(t, s.asg(rf, "sh", "-c", "trap '' TERM; echo started $$; sleep 10; touch "+marker))
	s.f.wait(t, "output", func() bool { return len(s.f.logs[keyOf(rf)]) > 0 })
	stdout, _, _ := s.f.logText(rf)
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(stdout, "started ")))
	if err != nil {
		t.Fatalf("task output %q: %v", stdout, err)
	}
	if err := s.r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the task (pid %d) outlived the agent's shutdown (kill -0: %v)", pid, err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the task ran to its end (marker: %v); shutdown waited for it instead of killing it", err)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if end := s.f.final(rf); end != nil {
		t.Errorf("an attempt stopped by shutdown reported %v (it is lost, not failed)", end)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{WorkDir: "/x"},
		{CoordinatorAddr: "h:1"},
		{CoordinatorAddr: "h:1", WorkDir: "/x", LogBatchBytes: 8 << 20},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", c)
		}
	}
	if _, err := New(Config{CoordinatorAddr: "h:1", WorkDir: "/x"}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

// TestMillionLinesThroughput ships `seq 1000000` (~6.9 MB) through the
// agent and the fake coordinator over bufconn, every byte once.
func TestMillionLinesThroughput(t *testing.T) {
	s := newMemSetup(t, func(c *Config) { c.LogFlushInterval = 100 * time.Millisecond })
	rf := ref("million", 0, 1)
	s.f.assign(t, s.asg(rf, "seq", "1000000"))
	s.f.wait(t, "RUNNING", func() bool {
		for _, r := range s.f.reports {
			if keyOf(r.GetRef()) == keyOf(rf) && r.GetState() == cloudmlv1.TaskState_TASK_STATE_RUNNING {
				return true
			}
		}
		return false
	})
	end := s.f.waitFinal(t, rf)
	stdout, _, batches := s.f.logText(rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || len(stdout) != 6888896 {
		t.Fatalf("end = %v, stdout %d bytes", end.GetState(), len(stdout))
	}
	// Every line once, in order (the speed is make bench's).
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	for i, l := range lines {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("line %d of %d is %q, want %d", i+1, len(lines), l, i+1)
		}
	}
	if len(lines) != 1000000 || batches < 2 {
		t.Errorf("%d lines in %d batches, want 1000000 lines in more than one batch", len(lines), batches)
	}
}

// When the results cannot reach the bucket, the node keeps the attempt's
// directory, so its outputs are not lost.
func TestFailedUploadKeepsTheAttemptDirectory(t *testing.T) {
	var work string
	s := newMemSetup(t, func(c *Config) { work = c.WorkDir })
	rf := ref("keep", 0, 1)
	asg := s.asg(rf, "sh", "-c", `echo kept > "$CLOUDML_OUTPUT_DIR/model.txt"`)
	asg.Output = "mem://nosuchbucket/out"
	s.f.assign(t, asg)
	end := s.f.waitFinal(t, rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_FAILED || !strings.Contains(end.GetMessage(), "upload results") {
		t.Fatalf("end = %v %q, want failed by the upload", end.GetState(), end.GetMessage())
	}
	data, err := os.ReadFile(filepath.Join(work, "attempts", "keep", "0", "1", "output", "model.txt"))
	if err != nil || string(data) != "kept\n" {
		t.Errorf("output kept on the node = %q, %v", data, err)
	}
}

// Result files upload side by side (each GCS upload is a round trip or
// more), and the manifest only once all of them are stored.
func TestResultsUploadInParallelManifestLast(t *testing.T) {
	slow := &slowPuts{}
	s := newMemSetup(t, func(c *Config) {
		open := c.OpenBucket
		c.OpenBucket = func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
			b, loc, err := open(ctx, rawURL)
			slow.Bucket = b
			return slow, loc, err
		}
	})
	rf := ref("many", 0, 1)
	s.f.assign(t, s.asg(rf, "sh", "-c", `for i in 1 2 3 4 5 6; do echo $i > "$CLOUDML_OUTPUT_DIR/out$i.txt"; done`))
	if end := s.f.waitFinal(t, rf); end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end = %v %q", end.GetState(), end.GetMessage())
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.most < 2 {
		t.Errorf("at most %d uploads at once, want them side by side", slow.most)
	}
	if n := len(slow.order); n != 9 || slow.order[n-1] != "manifest.json" || slow.manifestWith != 0 {
		t.Errorf("uploads %v (%d others in flight with the manifest); want 6 outputs and 2 logs, then the manifest alone",
			slow.order, slow.manifestWith)
	}
	data, _ := s.b.Get("out/results/many/0/1/manifest.json")
	if !strings.Contains(string(data), `"path": "out6.txt"`) {
		t.Errorf("manifest does not list the outputs:\n%s", data)
	}
}

// slowPuts is a bucket whose Puts take 20ms and are watched.
type slowPuts struct {
	bucket.Bucket
	mu           sync.Mutex
	now, most    int      // Puts in flight, and the most at once
	order        []string // base names, as Puts ended
	manifestWith int      // Puts in flight when the manifest's began
}

func (s *slowPuts) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	s.mu.Lock()
	if path.Base(key) == "manifest.json" {
		s.manifestWith = s.now
	}
	s.now++
	s.most = max(s.most, s.now)
	s.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	err := s.Bucket.Put(ctx, key, r, ifAbsent)
	s.mu.Lock()
	s.now--
	s.order = append(s.order, path.Base(key))
	s.mu.Unlock()
	return err
}

func (s *slowPuts) Close() error { return nil }

// A job may come without code (the spec's code is optional): it runs in an
// empty working directory instead of failing to stage "".
func TestAttemptWithoutCode(t *testing.T) {
	s := newMemSetup(t, nil)
	rf := ref("nocode", 0, 1)
	asg := s.asg(rf, "sh", "-c", "ls | wc -l")
	asg.Code = nil
	s.f.assign(t, asg)
	if end := s.f.waitFinal(t, rf); end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("end = %v %q, want succeeded", end.GetState(), end.GetMessage())
	}
	if stdout, _, _ := s.f.logText(rf); strings.TrimSpace(stdout) != "0" {
		t.Errorf("working directory held %q entries, want 0", stdout)
	}
}
