package simagent_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/simagent"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestSweepRunsEachTaskOnce runs a few simulated agents against a real
// coordinator over TCP and mutual TLS: every node gets ready, and a sweep
// succeeds with every task run exactly once through every state, its
// start and end recorded and its log line stored: carried by its end
// report, or, as agents did before (SeparateLogs and ReportStaging), in a
// PublishLogs call of its own after a STAGING report.
func TestSweepRunsEachTaskOnce(t *testing.T) {
	for _, old := range []bool{false, true} {
		t.Run(fmt.Sprintf("SeparateLogs,ReportStaging=%v", old), func(t *testing.T) { sweepOnce(t, old) })
	}
}

func sweepOnce(t *testing.T, separate bool) {
	addr, admin := inproc.ServeTCP(t, func(c *coordinator.Config) { c.HeartbeatPeriod = 100 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // only a hang's bound
	defer cancel()
	tok, err := admin.CreateToken(ctx, client.TokenOptions{Uses: -1, TTL: time.Hour, Label: "simagent test"})
	if err != nil {
		t.Fatal(err)
	}
	const nodes, slots, tasks = 5, 2, 40
	cfg := simagent.DefaultConfig()
	cfg.Addr, cfg.JoinToken, cfg.Nodes, cfg.Slots = addr, tok.GetToken(), nodes, slots
	cfg.Logger = testutil.Logger(t).Named("sim")
	cfg.SeparateLogs, cfg.ReportStaging = separate, separate
	fleet, err := simagent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- fleet.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	for {
		ns, err := admin.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, n := range ns {
			if n.GetState() == cloudmlv1.NodeState_NODE_STATE_READY {
				ready++
			}
		}
		if seen, _ := fleet.Recorder().Ready(); ready == nodes && seen == nodes {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d nodes ready: %v", ready, nodes, ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}

	vals := make([]string, tasks)
	for i := range vals {
		vals[i] = fmt.Sprint(i)
	}
	sub, err := admin.Submit(ctx, &cloudmlv1.JobSpec{
		Name: "sim", Command: []string{"true"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"i": {Values: vals}}},
	}, client.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.GetId()
	var job *cloudmlv1.Job
	for {
		if job, err = admin.Job(ctx, id); err != nil {
			t.Fatal(err)
		}
		if s := job.GetState(); s != cloudmlv1.JobState_JOB_STATE_PENDING && s != cloudmlv1.JobState_JOB_STATE_RUNNING {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s still %s: %v", id, job.GetState(), ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
	if job.GetState() != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job %s ended %s, want SUCCEEDED: %v", id, job.GetState(), job.GetTaskStates())
	}
	runs := fleet.Recorder().Runs(id)
	for i := range int32(tasks) {
		if runs[i] != 1 {
			t.Errorf("task %d ran %d times, want once", i, runs[i])
		}
	}
	if len(runs) != tasks {
		t.Errorf("%d task indexes ran, want %d", len(runs), tasks)
	}
	for _, tk := range job.GetTasks() {
		if tk.GetAttempt() != 1 {
			t.Errorf("task %d took %d attempts, want 1", tk.GetIndex(), tk.GetAttempt())
		}
		if st, end := tk.GetStartTime(), tk.GetEndTime(); st == nil || end == nil || st.AsTime().After(end.AsTime()) {
			t.Errorf("task %d ran %v to %v, want a start and an end after it", tk.GetIndex(), st, end)
		}
	}
	if got := len(fleet.Recorder().Assigned()); got != tasks {
		t.Errorf("%d assignments received, want %d", got, tasks)
	}
	// A sweep may end within one heartbeat period: wait for a beat.
	for len(fleet.Recorder().Latencies(simagent.CallHeartbeat, time.Time{}, time.Time{})) == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("no Heartbeat call recorded: %v", ctx.Err())
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
	// The job shows SUCCEEDED once the last report is on disk, which can be
	// before the agent that sent it has its answer and records the call.
	calls := []string{simagent.CallRunning, simagent.CallSucceeded}
	if separate {
		calls = append(calls, simagent.CallLogs, simagent.CallStaging)
	} else if got := len(fleet.Recorder().Latencies(simagent.CallLogs, time.Time{}, time.Time{})); got != 0 {
		t.Errorf("%d PublishLogs calls with logs carried by the reports, want 0", got)
	}
	for _, call := range calls {
		for len(fleet.Recorder().Latencies(call, time.Time{}, time.Time{})) < tasks && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		if got, want := len(fleet.Recorder().Latencies(call, time.Time{}, time.Time{})), tasks; got != want {
			t.Errorf("%d %s calls recorded, want %d (errors: %v)", got, call, want, fleet.Recorder().Errors())
		}
	}

	var lines int
	if _, err := admin.Logs(ctx, id, client.LogOptions{}, func(r *cloudmlv1.SubscribeLogsResponse) error {
		lines += bytes.Count(r.GetData(), []byte("\n"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if lines != tasks {
		t.Errorf("%d log lines stored, want one per task (%d)", lines, tasks)
	}
}

// TestConfigValidate refuses a config without an address or a token.
func TestConfigValidate(t *testing.T) {
	if err := simagent.DefaultConfig().Validate(); err == nil {
		t.Error("a config without addr and token validated")
	}
	if _, err := simagent.New(simagent.DefaultConfig()); err == nil {
		t.Error("New accepted a config without addr and token")
	}
	cfg := simagent.DefaultConfig()
	cfg.Addr, cfg.JoinToken = "127.0.0.1:1", pki.NewToken(strings.Repeat("ab", 32)).String()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a config with addr and token: %v", err)
	}
	cfg.HeartbeatPeriod = -time.Second
	if err := cfg.Validate(); err == nil {
		t.Error("a negative heartbeat period validated")
	}
}
