package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/simagent"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// The control-plane part (C, issue 11): a real `coordinator serve
// --provider none` process from bin/, N simulated agents
// (internal/simagent: the real protocol, each on its own TCP and mutual TLS
// connection, one log line per attempt) and a sweep of `true` submitted
// with the real client. Each N gets a fresh coordinator and state.
//
// Baseline, main's coordinator (one lock, a bbolt commit with fsync per
// report) on the 2-core machine, 2026-12-05, two quiet runs (README has
// the full table and a loaded run):
//
//	                           N=100        N=300         N=1000      goal at 1000
//	placements/s, steady       419-478      332-374       333-374     >= 2,500
//	makespan                   21-23 s      25-28 s       29-32 s
//	heartbeat p99 idle / load  14 / 282-325 14 / 970-1185 15-17 / 3689-3929 ms   <= 50 ms
//	GetJob p99 under load      310-390 ms   892-1150 ms   3326-3963 ms
//	down / lost / run twice    0 / 0 / 0    0 / 0 / 0     2-90 / 8-313 / 7-250  0 / 0 / 0
//	peak RSS                   171-177 MiB  334-364 MiB   852-939 MiB <= 512 MiB
//
// With other sessions loading the machine (load average 5-7), N=1000
// cascaded: every node marked down at least once, 57,934 attempts lost,
// 6,418 tasks run twice, a 6-minute makespan, 1,173 MiB peak RSS.

// Call names the bench records beside the simulated agents' calls.
const (
	callGetJob    = "GetJob"
	callListNodes = "ListNodes"
)

// cpFollow is -cp-follow: a client follows the sweep's logs (logs -f)
// during the run.
var cpFollow bool

// cpProfileDir is -cp-profile: where each coordinator writes its CPU
// profile (empty: none).
var cpProfileDir string

// cpSeries is -cp-series: print each second of the sweep's placements and
// heartbeat latencies.
var cpSeries bool

// cpProbeNodes is -cp-probe: nodes of the heartbeat probe, a child
// process beside the simulated agents (0: none).
var cpProbeNodes = 8

// cpProbeBeat is how often each probe node heartbeats: with 8 nodes, 32
// samples a second, a few hundred in a sweep of about 10 s (the
// coordinator's 2 s period would give 40).
const cpProbeBeat = 250 * time.Millisecond

// cpSingleReports is -cp-single-reports: the simulated agents send each
// report in its own ReportTask call, not in the agent's ReportTasks batches.
var cpSingleReports bool

// cpSeparateLogs is -cp-separate-logs: the simulated agents ship each
// attempt's line in a PublishLogs call of its own, not with its end report.
var cpSeparateLogs bool

// cpReportStaging is -cp-report-staging: the simulated agents report
// STAGING before RUNNING, as agents did before their staging delay.
var cpReportStaging bool

// cpPulse is -cp-pulse: the coordinator answers heartbeats in its pulse
// process (--heartbeat-listen), as it should serve this many nodes;
// -cp-pulse=false measures them on its own port and process.
var cpPulse = true

// cpAgentsProc is -cp-agents-proc: the N simulated agents run in a child
// process instead of the bench's own.
var cpAgentsProc bool

// cpBenchProfileDir is -cp-bench-profile: where the bench process (the
// simulated agents and the client) writes its CPU profile of each run,
// submit to the job's end (empty: none).
var cpBenchProfileDir string

// cpResult is one run of the control-plane measurement at one N.
type cpResult struct {
	nodes                  int
	ready                  time.Duration // fleet start to all N ready
	placeRate              float64       // placements per second, middle 80% of the sweep
	placeAll               float64       // placements per second, submit to the last first-assignment
	makespan               time.Duration // submit to the job's end
	hbIdle, hbLoad         [2]time.Duration
	probeIdle, probeLoad   [2]time.Duration // the heartbeat probe's
	probeBeats             int              // the probe's heartbeats under load
	getIdle, getLoad       [2]time.Duration
	listLoad               [2]time.Duration
	down, downLog          int // nodes seen DOWN (ListNodes) / "node down" lines logged
	lost, runTwice, failed int
	reportsPerTask         float64 // reports the agents made per task
	reportCallsPerTask     float64 // ReportTasks (or ReportTask) calls that carried them
	reconnects             int
	callErrs               map[string]string
	idleRSS, peakRSS       int64   // bytes: VmRSS with N idle nodes before the job, VmHWM at the end
	pulseCPURun            float64 // the pulse process's CPU seconds, submit to end (0: none)
	pulseRSS               int64   // the pulse process's VmHWM at the end
	cpu, cpuRun            float64
	tasksPerCPU            float64 // tasks per coordinator CPU-second, submit to end
	agentsCPURun           float64 // the simulated agents' process (the bench's, or their own), submit to end
	stateBytes             int64
	fsync                  time.Duration // median 4 KiB write+fsync on the state's disk
}

// cpRows runs the control-plane measurement for each N in nodes, runs times,
// and prints the table.
func cpRows(nodes []int, runs, tasks, slots int) error {
	if err := raiseNoFile(max(nodes[len(nodes)-1]*4+1024, 8192)); err != nil {
		return err
	}
	start := time.Now()
	results := make([][]cpResult, len(nodes))
	var failed error
	for r := range runs {
		for i, n := range nodes {
			res, err := cpRun(n, tasks, slots)
			if err != nil {
				failed = fmt.Errorf("control plane, N=%d, run %d: %w", n, r+1, err)
				break
			}
			fmt.Fprintf(os.Stderr, "bench: C N=%d run %d: makespan %s, %.0f placements/s, hb p99 %s\n",
				n, r+1, res.makespan.Round(time.Millisecond), res.placeRate, res.hbLoad[1].Round(time.Millisecond))
			results[i] = append(results[i], res)
		}
		if failed != nil {
			break
		}
	}
	printCP(fmt.Sprintf("CloudML benchmarks, control plane: a %d-task sweep of `true` on N simulated agents x %d slots, one log line per attempt (%d runs; median, [min-max] over runs; %s)",
		tasks, slots, runs, time.Since(start).Round(time.Second)), nodes, results)
	fmt.Print(cpNotes)
	return failed
}

// cpNotes says how the control-plane rows are measured.
const cpNotes = `
  C) a fresh coordinator serve --provider none (bin/, state on this disk, log level warn, heartbeats
     answered by its pulse process: --heartbeat-listen; -cp-pulse=false: on its own port) per N;
     N simulated agents (internal/simagent) in the bench process (-cp-agents-proc: in a child
     process of their own) register with one join token, 16 at a time. Ready: the fleet's start
     to every node READY in ListNodes. Placements/s: the middle 80% of first assignment receipts
     (all of them: submit to the last), the probe's included. Makespan: submit to the job's
     end_time. Under load: calls that began between submit and the job's end (GetJob of the job
     every 250 ms, ListNodes every 1 s from one client). Idle heartbeats: the 6 s with N ready
     nodes before the submit; idle GetJob: 20 calls on the finished job after the run.
     Probe: -cp-probe nodes (8) more, registered once the N are ready by a child process of the
     bench (bench cp-agents, the same simagent code and token) at the bench's priority, each
     heartbeating every 250 ms instead of 2 s for samples; they take tasks like any node, with one
     slot each (the coordinator gives every node at least one, and a node without a session is
     marked down). The N agents' heartbeats are timed in a process running 1,000 nodes' calls;
     the probe's in one that is nearly idle, so the difference is the agents' process's own
     queueing, and the probe's latency is the coordinator's (and the machine's) share: what an
     agent on a machine of its own sees, so the heartbeat goal is the probe's. Pulse: the
     coordinator's heartbeat process (coordinator/pulse), a child of it; its RSS and CPU are
     apart from the coordinator's.
     -cp-series prints each second's placements, both p50/p99 and the cores the coordinator, the
     agents' process and the whole machine used (/proc).
     Down: nodes ListNodes ever showed DOWN (and "node down" lines the coordinator logged); lost:
     attempts beyond the first of every task (retries 0, true never fails); run twice: task
     indexes that reached RUNNING on more than one attempt, on any node. RSS: VmRSS with N idle
     nodes before the job, VmHWM after the run; CPU: utime+stime, in all and from submit to the
     job's end; the simulated agents share the machine's cores with the coordinator, and their
     CPU is that of the process they run in. Tasks per coordinator CPU-second: the sweep's tasks
     over the coordinator's CPU from submit to end, the rate one core of its own would bound
     (real agents run on their own machines). Reports: ReportTask reports the agents made, and
     the calls that carried them (a node batches what queues while its last call is in flight).
     State: the bytes of the state directory after the run. Fsync: a 4 KiB write and fsync on
     the state's disk, median of 200, before each run: the time of one group commit's sync on a
     given disk.
`

// cpRun measures one N on a fresh coordinator.
func cpRun(n, tasks, slots int) (res cpResult, err error) {
	res.nodes = n
	dir, err := os.MkdirTemp("", "cloudml-bench-cp-")
	if err != nil {
		return res, err
	}
	if res.fsync, err = fsyncLatency(dir, 200); err != nil {
		os.RemoveAll(dir)
		return res, err
	}
	args := []string{"--provider", "none", "--state", filepath.Join(dir, "state"),
		"--bucket", "file://" + filepath.Join(dir, "bucket"), "--log-level", "warn"}
	if cpPulse {
		args = append(args, "--heartbeat-listen", "127.0.0.1:0")
	}
	if cpProfileDir != "" {
		profile := filepath.Join(cpProfileDir, fmt.Sprintf("coordinator-n%d-%s.pprof", n, time.Now().Format("150405")))
		args = append(args, "--cpu-profile", profile)
		fmt.Fprintf(os.Stderr, "N=%d: coordinator CPU profile in %s\n", n, profile)
	}
	b, err := startCoordinator(dir, nil, args...)
	if err != nil {
		os.RemoveAll(dir)
		return res, err
	}
	defer b.close(30 * time.Second)
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ncoordinator log tail:\n%s", err, b.logTail())
		}
	}()
	var downLog sync.Map
	b.log.watch(func(_ time.Time, line string) {
		if strings.Contains(line, "node down") {
			if i := strings.Index(line, "node_id="); i >= 0 {
				downLog.Store(strings.Fields(line[i:])[0], true)
			}
		}
	})
	if err := b.waitConfig(30 * time.Second); err != nil {
		return res, err
	}
	ccfg, err := client.ConfigFromFile(b.configPath())
	if err != nil {
		return res, err
	}
	ccfg.Address = b.addr
	c, err := client.New(ccfg)
	if err != nil {
		return res, err
	}
	defer c.Close()
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, client.TokenOptions{Uses: -1, TTL: time.Hour, Label: "bench control plane"})
	if err != nil {
		return res, err
	}
	fleet, err := startAgents(agentsConfig{addr: b.addr, token: tok.GetToken(), nodes: n, slots: slots,
		prefix: "sim", here: !cpAgentsProc, single: cpSingleReports, separateLogs: cpSeparateLogs, reportStaging: cpReportStaging})
	if err != nil {
		return res, err
	}
	fleetStart := time.Now()
	defer fleet.stop()

	// Every node ready.
	if err := fleet.waitReady(10 * time.Minute); err != nil {
		return res, err
	}
	for {
		ns, err := c.Nodes(ctx)
		if err != nil {
			return res, err
		}
		ready := 0
		for _, nd := range ns {
			if nd.GetState() == cloudmlv1.NodeState_NODE_STATE_READY {
				ready++
			}
		}
		if ready == n {
			break
		}
		if time.Since(fleetStart) > 10*time.Minute {
			return res, fmt.Errorf("%d of %d nodes ready after 10 minutes", ready, n)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	res.ready = time.Since(fleetStart)

	// The heartbeat probe: a few more nodes in a process of their own, at
	// the bench's priority.
	var probe agents
	if cpProbeNodes > 0 {
		if probe, err = startAgents(agentsConfig{addr: b.addr, token: tok.GetToken(), nodes: cpProbeNodes, slots: 1,
			prefix: "probe", heartbeat: cpProbeBeat, single: cpSingleReports, separateLogs: cpSeparateLogs, reportStaging: cpReportStaging}); err != nil {
			return res, err
		}
		defer probe.stop()
		if err := probe.waitReady(time.Minute); err != nil {
			return res, err
		}
	}
	pid := b.cmd.Process.Pid

	// Idle: N nodes heartbeating, no job.
	idleFrom := time.Now()
	time.Sleep(6 * time.Second)
	idleTo := time.Now()
	res.idleRSS = procStatus(pid, "VmRSS")
	cpuBefore, agentsBefore := procCPU(pid), procCPU(fleet.pid())
	pulsePid := childOf(pid) // the pulse process, with -cp-pulse; 0 otherwise
	pulseBefore := procCPU(pulsePid)

	vals := make([]string, tasks)
	for i := range vals {
		vals[i] = strconv.Itoa(i)
	}
	stopProfile, err := startBenchProfile(n)
	if err != nil {
		return res, err
	}
	defer stopProfile()
	stopCPU := func() [][3]float64 { return nil }
	if cpSeries {
		stopCPU = sampleCPU(pid, fleet.pid())
	}
	submitAt := time.Now()
	sub, err := c.Submit(ctx, &cloudmlv1.JobSpec{
		Name: "cp", Command: []string{"true"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"i": {Values: vals}}},
	}, client.SubmitOptions{})
	if err != nil {
		return res, err
	}
	id := sub.Job.GetId()
	if cpFollow {
		go func() { // a user's `logs -f` of the whole sweep
			msgs := 0
			_, err := c.Logs(ctx, id, client.LogOptions{Follow: true}, func(*cloudmlv1.SubscribeLogsResponse) error { msgs++; return nil })
			fmt.Fprintf(os.Stderr, "bench: C N=%d: the follower got %d messages (%v)\n", n, msgs, err)
		}()
	}

	// Under load: GetJob every 250 ms until the job ends; ListNodes every
	// second, noting every node ever DOWN.
	calls := simagent.NewRecorder() // the client's calls
	downSeen := map[string]bool{}
	var job *cloudmlv1.Job
	lastList := time.Time{}
	for {
		t0 := time.Now()
		job, err = c.Job(ctx, id)
		calls.Observe(callGetJob, t0, err)
		if err != nil {
			return res, err
		}
		if s := job.GetState(); s != cloudmlv1.JobState_JOB_STATE_PENDING && s != cloudmlv1.JobState_JOB_STATE_RUNNING {
			break
		}
		if time.Since(lastList) >= time.Second {
			lastList = time.Now()
			ns, err := c.Nodes(ctx)
			calls.Observe(callListNodes, lastList, err)
			for _, nd := range ns {
				if nd.GetState() == cloudmlv1.NodeState_NODE_STATE_DOWN {
					downSeen[nd.GetId()] = true
				}
			}
		}
		if time.Since(submitAt) > 30*time.Minute {
			return res, fmt.Errorf("job %s still %s after 30 minutes: %v", id, job.GetState(), job.GetTaskStates())
		}
		time.Sleep(250 * time.Millisecond)
	}
	end := time.Now()
	if et := job.GetEndTime(); et != nil {
		end = et.AsTime()
	}
	res.makespan = end.Sub(submitAt)
	res.cpuRun = procCPU(pid) - cpuBefore
	if res.cpuRun > 0 {
		res.tasksPerCPU = float64(tasks) / res.cpuRun
	}
	res.agentsCPURun = procCPU(fleet.pid()) - agentsBefore
	if pulsePid > 0 {
		res.pulseCPURun = procCPU(pulsePid) - pulseBefore
	}
	cpuSeries := stopCPU()
	stopProfile()
	ns, err := c.Nodes(ctx)
	if err != nil {
		return res, err
	}
	for _, nd := range ns {
		if nd.GetState() == cloudmlv1.NodeState_NODE_STATE_DOWN {
			downSeen[nd.GetId()] = true
		}
	}
	res.down = len(downSeen)
	downLog.Range(func(any, any) bool { res.downLog++; return true })
	for _, t := range job.GetTasks() {
		res.lost += int(t.GetAttempt()) - 1
		if t.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
			res.failed++
		}
	}
	res.getLoad = p50p99(calls.Latencies(callGetJob, submitAt, end))
	res.listLoad = p50p99(calls.Latencies(callListNodes, submitAt, end))

	// Idle GetJob: the finished job, nothing else running.
	time.Sleep(2 * time.Second)
	idleGet := time.Now()
	for range 20 {
		t0 := time.Now()
		_, err := c.Job(ctx, id)
		calls.Observe(callGetJob, t0, err)
		time.Sleep(100 * time.Millisecond)
	}
	res.getIdle = p50p99(calls.Latencies(callGetJob, idleGet, time.Time{}))
	res.peakRSS = procStatus(pid, "VmHWM")
	res.cpu = procCPU(pid)
	if pulsePid > 0 {
		res.pulseRSS = procStatus(pulsePid, "VmHWM")
	}

	// What the agents and the probe recorded.
	rec, err := fleet.stop()
	if err != nil {
		return res, err
	}
	recs := []*simagent.Recorder{rec}
	res.callErrs = rec.Errors()
	if probe != nil {
		prec, err := probe.stop()
		if err != nil {
			return res, err
		}
		recs = append(recs, prec)
		res.probeIdle = p50p99(prec.Latencies(simagent.CallHeartbeat, idleFrom, idleTo))
		beats := prec.Latencies(simagent.CallHeartbeat, submitAt, end)
		res.probeLoad, res.probeBeats = p50p99(beats), len(beats)
		for k, v := range prec.Errors() {
			res.callErrs["probe "+k] = v
		}
	}
	res.hbIdle = p50p99(rec.Latencies(simagent.CallHeartbeat, idleFrom, idleTo))
	res.hbLoad = p50p99(rec.Latencies(simagent.CallHeartbeat, submitAt, end))
	res.runTwice = runTwice(id, recs)
	var assigned []time.Time
	reports, batches := 0, 0
	for _, r := range recs {
		res.reconnects += r.Reconnects()
		assigned = append(assigned, r.Assigned()...)
		for _, call := range []string{simagent.CallStaging, simagent.CallRunning, simagent.CallSucceeded} {
			reports += len(r.Latencies(call, time.Time{}, time.Time{}))
		}
		batches += len(r.Latencies(simagent.CallReportTasks, time.Time{}, time.Time{}))
	}
	res.reportsPerTask = float64(reports) / float64(tasks)
	res.reportCallsPerTask = res.reportsPerTask // one call each (-cp-single-reports)
	if batches > 0 {
		res.reportCallsPerTask = float64(batches) / float64(tasks)
	}
	slices.SortFunc(assigned, time.Time.Compare)
	if len(assigned) > 0 {
		res.placeAll = float64(len(assigned)) / assigned[len(assigned)-1].Sub(submitAt).Seconds()
	}
	if lo, hi := len(assigned)/10, len(assigned)*9/10; hi > lo+1 {
		res.placeRate = float64(hi-lo) / assigned[hi-1].Sub(assigned[lo]).Seconds()
	}
	if cpSeries {
		printSeries(n, recs, cpuSeries, submitAt, end)
	}
	res.stateBytes = dirBytes(filepath.Join(dir, "state"))
	return res, nil
}

// printSeries prints, for each second from submit to end, the first
// assignments received and the heartbeats begun in it with their p50 and
// p99 (then the probe's, when recs has it after the agents', and the
// cores the coordinator and the agents used, from sampleCPU): the sweep
// runs in waves (every slot starts at once, ends at about the same time
// and is refilled in a burst), and a run's heartbeat p99 is that of its
// worst burst.
func printSeries(n int, recs []*simagent.Recorder, cpu [][3]float64, submitAt, end time.Time) {
	var assigned []time.Time
	for _, r := range recs {
		assigned = append(assigned, r.Assigned()...)
	}
	for from := submitAt; from.Before(end); from = from.Add(time.Second) {
		to := from.Add(time.Second)
		placed := 0
		for _, t := range assigned {
			if !t.Before(from) && t.Before(to) {
				placed++
			}
		}
		hb := recs[0].Latencies(simagent.CallHeartbeat, from, to)
		pp := p50p99(hb)
		line := fmt.Sprintf("bench: C N=%d t+%ds: %5d placed, %4d heartbeats p50 %s p99 %s",
			n, int(from.Sub(submitAt)/time.Second), placed, len(hb), pp[0].Round(time.Millisecond), pp[1].Round(time.Millisecond))
		if len(recs) > 1 {
			probe := recs[1].Latencies(simagent.CallHeartbeat, from, to)
			pp := p50p99(probe)
			line += fmt.Sprintf("; probe %3d p50 %s p99 %s", len(probe), pp[0].Round(time.Millisecond), pp[1].Round(time.Millisecond))
		}
		if i := int(from.Sub(submitAt) / time.Second); i+1 < len(cpu) {
			d := func(j int) float64 { return cpu[i+1][j] - cpu[i][j] }
			line += fmt.Sprintf("; cores: coordinator %.1f, agents %.1f, machine %.1f", d(0), d(1), d(2))
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

// sampleCPU reads the CPU seconds of the coordinator, of the agents' pid
// and of the whole machine now and every second after, until stop; stop
// returns one row per sample.
func sampleCPU(coordinator, agents int) (stop func() [][3]float64) {
	sample := func() [3]float64 { return [3]float64{procCPU(coordinator), procCPU(agents), machineCPU()} }
	rows := [][3]float64{sample()}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				rows = append(rows, sample())
			}
		}
	}()
	return func() [][3]float64 {
		close(done)
		<-finished
		return rows
	}
}

// runTwice counts the task indexes of job that simulated agents started
// more than once, over the nodes of every recorder.
func runTwice(job string, recs []*simagent.Recorder) int {
	runs := map[int32]int{}
	for _, r := range recs {
		for i, c := range r.Runs(job) {
			runs[i] += c
		}
	}
	n := 0
	for _, c := range runs {
		if c > 1 {
			n++
		}
	}
	return n
}

// startBenchProfile starts this process's CPU profile for a run at n nodes
// when -cp-bench-profile is set; the returned stop may be called more than
// once.
func startBenchProfile(n int) (stop func(), err error) {
	if cpBenchProfileDir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(cpBenchProfileDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(cpBenchProfileDir, fmt.Sprintf("bench-n%d-%s.pprof", n, time.Now().Format("150405")))
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench CPU profile: %w", err)
	}
	fmt.Fprintf(os.Stderr, "N=%d: bench CPU profile in %s\n", n, path)
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

// fsyncLatency is the median time of n 4 KiB writes, each followed by an
// fsync, to a file in dir.
func fsyncLatency(dir string, n int) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	ds := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t0))
	}
	return median(ds), nil
}

func p50p99(sorted []time.Duration) [2]time.Duration {
	return [2]time.Duration{simagent.Percentile(sorted, 50), simagent.Percentile(sorted, 99)}
}

// procStatus reads a "kB" field of /proc/PID/status, in bytes (0 if
// unreadable).
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// childOf is the pid of a child process of pid (0: none), found in
// /proc.
func childOf(pid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if f := strings.Fields(s[i+1:]); i >= 0 && len(f) > 1 && f[1] == strconv.Itoa(pid) {
			return child
		}
	}
	return 0
}

// procCPU is the process's user plus system CPU seconds from
// /proc/PID/stat (clock ticks of 1/100 s).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	// After ")": state is field 3 of stat, so utime (14) and stime (15) are
	// f[11] and f[12].
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// machineCPU is the CPU seconds all cores spent busy (the first line of
// /proc/stat, idle and iowait left out).
func machineCPU() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	busy := 0.0
	for i, v := range f[1:min(len(f), 9)] {
		if i != 3 && i != 4 {
			x, _ := strconv.ParseFloat(v, 64)
			busy += x
		}
	}
	return busy / 100
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// raiseNoFile raises this process's open file limit to at least want (N
// connections, and the coordinator child inherits it).
func raiseNoFile(want int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("open file limit: %w", err)
	}
	if lim.Cur >= uint64(want) {
		return nil
	}
	if lim.Max < uint64(want) {
		return fmt.Errorf("open file limit: the hard limit %d is below the %d the control-plane bench needs (ulimit -Hn)", lim.Max, want)
	}
	lim.Cur = uint64(want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open file limit to %d: %w", want, err)
	}
	return nil
}

// parseNodes reads -cp-nodes: a comma-separated list of node counts.
func parseNodes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-cp-nodes: %q is not a node count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("-cp-nodes: no node count")
	}
	sort.Ints(out)
	return out, nil
}

// printCP prints one column per N: the median of the runs, with their
// range when there are several.
func printCP(title string, nodes []int, results [][]cpResult) {
	fmt.Printf("\n%s\n\n", title)
	type line struct {
		name, goal string
		cell       func([]cpResult) string
	}
	num := func(get func(cpResult) float64, format func(float64) string) func([]cpResult) string {
		return func(rs []cpResult) string {
			if len(rs) == 0 {
				return "-"
			}
			vs := make([]float64, len(rs))
			for i, r := range rs {
				vs[i] = get(r)
			}
			m := medianF(vs)
			if len(vs) == 1 {
				return format(m)
			}
			sort.Float64s(vs)
			return fmt.Sprintf("%s [%s-%s]", format(m), format(vs[0]), format(vs[len(vs)-1]))
		}
	}
	msF := func(v float64) string {
		if v >= 1000 {
			return fmt.Sprintf("%.0fms", v)
		}
		return fmt.Sprintf("%.1fms", v)
	}
	ms := func(get func(cpResult) time.Duration) func([]cpResult) string {
		return num(func(r cpResult) float64 { return float64(get(r)) / 1e6 }, msF)
	}
	pair := func(get func(cpResult) [2]time.Duration) func([]cpResult) string {
		a, b := ms(func(r cpResult) time.Duration { return get(r)[0] }), ms(func(r cpResult) time.Duration { return get(r)[1] })
		return func(rs []cpResult) string { return a(rs) + " / " + b(rs) }
	}
	count := func(get func(cpResult) int) func([]cpResult) string {
		return num(func(r cpResult) float64 { return float64(get(r)) }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	}
	secs := func(v float64) string { return fmt.Sprintf("%.1fs", v) }
	mib := func(v float64) string { return fmt.Sprintf("%.0fMiB", v/(1<<20)) }
	lines := []line{
		{"time until all N ready", "", num(func(r cpResult) float64 { return r.ready.Seconds() }, secs)},
		{"placements/s, steady (middle 80%)", ">= 2500 at N=1000", num(func(r cpResult) float64 { return r.placeRate }, func(v float64) string { return fmt.Sprintf("%.0f", v) })},
		{"placements/s, submit to last", "", num(func(r cpResult) float64 { return r.placeAll }, func(v float64) string { return fmt.Sprintf("%.0f", v) })},
		{"makespan (submit to job end)", "", num(func(r cpResult) float64 { return r.makespan.Seconds() }, secs)},
		{"heartbeat p50 / p99, idle", "", pair(func(r cpResult) [2]time.Duration { return r.hbIdle })},
		{"heartbeat p50 / p99, under load (N's process)", "", pair(func(r cpResult) [2]time.Duration { return r.hbLoad })},
		{"probe heartbeat p50 / p99, idle", "", pair(func(r cpResult) [2]time.Duration { return r.probeIdle })},
		{"probe heartbeat p50 / p99, under load", "p99 <= 50ms", pair(func(r cpResult) [2]time.Duration { return r.probeLoad })},
		{"probe heartbeats under load", "", count(func(r cpResult) int { return r.probeBeats })},
		{"GetJob p50 / p99, idle (finished job)", "", pair(func(r cpResult) [2]time.Duration { return r.getIdle })},
		{"GetJob p50 / p99, under load", "", pair(func(r cpResult) [2]time.Duration { return r.getLoad })},
		{"ListNodes p50 / p99, under load", "", pair(func(r cpResult) [2]time.Duration { return r.listLoad })},
		{"nodes marked down (ListNodes)", "0", count(func(r cpResult) int { return r.down })},
		{"nodes marked down (coordinator log)", "0", count(func(r cpResult) int { return r.downLog })},
		{"attempts lost", "0", count(func(r cpResult) int { return r.lost })},
		{"tasks run more than once", "0", count(func(r cpResult) int { return r.runTwice })},
		{"tasks not succeeded", "0", count(func(r cpResult) int { return r.failed })},
		{"reports per task", "", num(func(r cpResult) float64 { return r.reportsPerTask }, func(v float64) string { return fmt.Sprintf("%.2f", v) })},
		{"report calls per task (ReportTasks batches)", "", num(func(r cpResult) float64 { return r.reportCallsPerTask }, func(v float64) string { return fmt.Sprintf("%.2f", v) })},
		{"sessions reopened by agents", "", count(func(r cpResult) int { return r.reconnects })},
		{"coordinator RSS, N idle nodes", "", num(func(r cpResult) float64 { return float64(r.idleRSS) }, mib)},
		{"coordinator peak RSS (VmHWM)", "<= 512MiB at N=1000", num(func(r cpResult) float64 { return float64(r.peakRSS) }, mib)},
		{"pulse process peak RSS (VmHWM)", "", num(func(r cpResult) float64 { return float64(r.pulseRSS) }, mib)},
		{"pulse process CPU seconds (submit to end)", "", num(func(r cpResult) float64 { return r.pulseCPURun }, secs)},
		{"coordinator CPU seconds (total)", "", num(func(r cpResult) float64 { return r.cpu }, secs)},
		{"coordinator CPU seconds (submit to end)", "", num(func(r cpResult) float64 { return r.cpuRun }, secs)},
		{"tasks per coordinator CPU-second", "", num(func(r cpResult) float64 { return r.tasksPerCPU }, func(v float64) string { return fmt.Sprintf("%.0f", v) })},
		{"simulated agents' CPU-s (submit to end)", "", num(func(r cpResult) float64 { return r.agentsCPURun }, secs)},
		{"4 KiB write+fsync on the state's disk", "", ms(func(r cpResult) time.Duration { return r.fsync })},
		{"state dir size after the run", "", num(func(r cpResult) float64 { return float64(r.stateBytes) }, mib)},
	}
	fmt.Printf("%-42s", "measurement")
	for _, n := range nodes {
		fmt.Printf(" %28s", fmt.Sprintf("N=%d", n))
	}
	fmt.Printf("  %s\n", "goal")
	for _, l := range lines {
		fmt.Printf("%-42s", l.name)
		for i := range nodes {
			fmt.Printf(" %28s", l.cell(results[i]))
		}
		fmt.Printf("  %s\n", l.goal)
	}
	for i, n := range nodes {
		for r, res := range results[i] {
			if len(res.callErrs) == 0 {
				continue
			}
			keys := make([]string, 0, len(res.callErrs))
			for k := range res.callErrs {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			fmt.Printf("  N=%d run %d, call errors the simulated agents saw:\n", n, r+1)
			for _, k := range keys {
				fmt.Printf("    %s: %s\n", k, res.callErrs[k])
			}
		}
	}
}
