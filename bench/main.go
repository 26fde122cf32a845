// Command bench measures CloudML side by side with what a user would
// otherwise run, in one run on this machine, and prints ratios.
//
// With the process runtime (local agents):
//
//	a) a 200-task sweep of `sleep 0.1` against the same 200 commands under
//	   `xargs -P` with the same parallelism, and the per-task overhead of a
//	   trivial command;
//	b) one task printing 70,000,000 numbered lines, from submit to the
//	   last line received by `submit --follow`, against the same writer
//	   with its stdout on a file timed from spawn to exit, counting the
//	   lines lost and duplicated;
//	T) what mutual TLS costs an agent's registration: a new connection
//	   (TCP, TLS 1.3 handshake, Register) against Register on an open one,
//	   and the handshake alone against a TCP connect.
//
// The control plane (-parts C, make bench-cp; issue 11):
//
//	C) a fresh `coordinator serve --provider none` per N (-cp-nodes,
//	   default 100, 300 and 1,000) with N simulated agents
//	   (internal/simagent: the real protocol, each on its own TCP and
//	   mutual TLS connection, -cp-slots 4 each, one log line per attempt)
//	   and a sweep of `true` (-cp-tasks 10,000) submitted with the real
//	   client: time until all N are ready, placements per second,
//	   makespan, heartbeat and GetJob latency under load beside idle,
//	   nodes marked down, attempts lost, tasks run twice, the
//	   coordinator's RSS and CPU seconds and its state's size, beside the
//	   issue's goals; and the heartbeat latency of a probe, a few more
//	   nodes in a child process (bench cp-agents) that is not busy with
//	   the N agents' calls.
//
// On the DigitalOcean test server (internal/dofake/testcloud, root):
//
//	d) cluster up --nodes 3 until every node is in the swarm, against a
//	   script doing docker swarm init/join on the same nodes.
//
// On a local 3-node Docker Swarm (`coordinator serve --provider netns`,
// root and docker.io; -swarm=false skips it):
//
//	a) a 100-task sweep of `true` as swarm services through CloudML against
//	   the same services created directly through the Engine API, and that
//	   every index ran exactly once;
//	b) one task printing 1,000,000 numbered lines, from submit to the
//	   last line received by `submit --follow`, against the same writer
//	   (busybox seq) with its stdout on a file timed from spawn to exit,
//	   and against `docker service logs -f` of the same command as a
//	   service, counting lines lost and duplicated by each;
//	c) staging a 1 GiB object from fake-gcs-server on every node against
//	   curl of the same object from the same server, and the bytes a second
//	   staging of the same code and data downloads.
//
// It uses the binaries in bin/ (make build) and reports medians of -runs
// (-swarm-runs for the swarm part).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cloudml/cloudml/internal/netns"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == cpAgentsCmd { // the bench's own child (cpagents.go)
		if err := agentsMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench "+cpAgentsCmd+":", err)
			os.Exit(1)
		}
		return
	}
	runs := flag.Int("runs", 3, "repetitions of each measurement (medians are reported)")
	logRuns := flag.Int("log-runs", 5, "repetitions of the process log measurement (b); one run of 70M lines takes ~20 s")
	tasks := flag.Int("tasks", 200, "tasks in the sweep benchmark")
	nodes := flag.Int("nodes", 2, "local agents")
	slots := flag.Int("slots", 4, "slots per agent (parallelism = nodes*slots)")
	lines := flag.Int("lines", 70000000, "lines in the process log benchmark (b): at least 10 s through CloudML on the 2-core machine")
	swarm := flag.Bool("swarm", true, "also run the swarm benchmarks (root and docker.io)")
	swarmRuns := flag.Int("swarm-runs", 3, "repetitions of each swarm measurement")
	swarmLines := flag.Int("swarm-lines", 1000000, "lines in the swarm log benchmark (b): about 17 s through CloudML (the Engine's logs API passes ~60k lines/s)")
	swarmTasks := flag.Int("swarm-tasks", 100, "tasks in the swarm sweep benchmark")
	stageMiB := flag.Int64("stage-mib", 1024, "size of the staged object in MiB")
	procParts := flag.String("parts", "abT", "which process-runtime measurements to run (a, b, T; C, the control plane at N simulated agents, runs only when named: make bench-cp)")
	parts := flag.String("swarm-parts", "abcd", "which swarm measurements to run (a, b, c; d on the DigitalOcean test server)")
	doNodes := flag.Int("do-nodes", 3, "droplets in the cluster up measurement (d)")
	cpNodes := flag.String("cp-nodes", "100,300,1000", "control plane (C): simulated agents, one coordinator per count")
	cpTasks := flag.Int("cp-tasks", 10000, "control plane (C): tasks in the sweep of true")
	cpSlots := flag.Int("cp-slots", 4, "control plane (C): slots per simulated agent")
	cpRuns := flag.Int("cp-runs", 1, "control plane (C): repetitions at each node count")
	flag.StringVar(&cpProfileDir, "cp-profile", "", "control plane (C): a directory where each coordinator writes its CPU profile (go tool pprof)")
	flag.StringVar(&cpBenchProfileDir, "cp-bench-profile", "", "control plane (C): a directory where the bench process (the simulated agents) writes its CPU profile of each run, submit to the job's end (go tool pprof; with -cp-agents-proc the agents are not in it)")
	flag.BoolVar(&cpSeries, "cp-series", false, "control plane (C): print each second of the sweep: placements, heartbeats and their p50/p99")
	flag.IntVar(&cpProbeNodes, "cp-probe", cpProbeNodes, "control plane (C): nodes of the heartbeat probe, a process of its own beside the simulated agents (0: none)")
	flag.BoolVar(&cpSingleReports, "cp-single-reports", false, "control plane (C): the simulated agents send each report in a ReportTask call of its own, as before ReportTasks, instead of the agent's batches")
	flag.BoolVar(&cpPulse, "cp-pulse", cpPulse, "control plane (C): the coordinator answers heartbeats in its pulse process (--heartbeat-listen); false: on its own port and process, to compare")
	flag.BoolVar(&cpReportStaging, "cp-report-staging", false, "control plane (C): the simulated agents report STAGING before RUNNING, as agents did before they skipped a staging shorter than 50 ms")
	flag.BoolVar(&cpSeparateLogs, "cp-separate-logs", false, "control plane (C): the simulated agents ship each attempt's log line in a PublishLogs call of its own, as before logs rode the end report")
	flag.BoolVar(&cpAgentsProc, "cp-agents-proc", false, "control plane (C): run the N simulated agents in a child process instead of the bench's own")
	flag.BoolVar(&cpFollow, "cp-follow", false, "control plane (C): a client follows the sweep's logs during the run, as logs -f would")
	flag.StringVar(&doTrace, "do-trace", "", "DigitalOcean row (d): write a timeline of its runs to this file (debug logs of the coordinator and agents, the droplets' consoles, the client's commands)")
	flag.StringVar(&coordinatorBin, "coordinator-bin", coordinatorBin, "the coordinator binary every part starts")
	flag.Parse()

	if strings.ContainsAny(*procParts, "abT") {
		start := time.Now()
		rows, err := processRows(*procParts, *runs, *logRuns, *tasks, *nodes, *slots, *lines)
		printRows(fmt.Sprintf("CloudML benchmarks, process runtime (median of %d runs each, %d for b; measured side by side; %s)",
			*runs, *logRuns, time.Since(start).Round(time.Second)), rows)
		fmt.Print(processNotes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if strings.Contains(*procParts, "C") {
		nodes, err := parseNodes(*cpNodes)
		if err == nil {
			err = cpRows(nodes, *cpRuns, *cpTasks, *cpSlots)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if !*swarm {
		return
	}
	if err := netns.Check(); err != nil {
		fmt.Printf("\nswarm benchmarks skipped: %v\n", err)
		return
	}
	if strings.ContainsAny(*parts, "abc") {
		start := time.Now()
		rows, teardown, err := swarmRows(*parts, *swarmRuns, *swarmTasks, *swarmLines, *stageMiB<<20)
		printRows(fmt.Sprintf("CloudML benchmarks, 3-node Docker Swarm (median of %d runs each, measured side by side; %s)",
			*swarmRuns, time.Since(start).Round(time.Second)), rows)
		fmt.Print(swarmNotes)
		fmt.Println(teardown)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if !strings.Contains(*parts, "d") {
		return
	}
	start := time.Now()
	rows, teardown, err := doRows(*swarmRuns, *doNodes)
	printRows(fmt.Sprintf("CloudML benchmarks, DigitalOcean test server (median of %d runs, measured side by side; %s)",
		*swarmRuns, time.Since(start).Round(time.Second)), rows)
	fmt.Print(doNotes)
	fmt.Println(teardown)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// processNotes says how the process log rows are measured.
const processNotes = `
  b) cloudml: cloudml-client submit --follow of one task running seq N on a local agent, from
     spawning the client to the last line it printed; rates count distinct lines received.
     Baseline: the same seq with its stdout on a file, from spawning it to its exit (the file
     complete in the page cache, not synced). First to last: the same runs, from the first
     line received.
`

// doNotes says how the DigitalOcean row is measured.
const doNotes = `
  d) cloudml: cluster up to its return (every droplet booted its cloud-init, fetched the
     agent, registered over mTLS and is in the swarm); droplets are active at once here
     (about 30 s on DigitalOcean), on nodes the test server set up ahead as the script's
     are (overlays, addresses: a boot only names the node). Baseline: a script running
     docker swarm init on one of the same nodes and docker swarm join on the others, to
     the manager listing all ready.
     The docker swarm init alone (cloudml: the founder's console, from "founding the swarm"
     to "swarm founded"; the script: around its init) takes about 0.2 s or about 0.7 s:
     dockerd checks its new manager's health once it can reach it and, if raft has not
     elected it yet, checks again 500 ms later (swarmkit's initManagerConnection). The
     init wins that race more often alone than beside the droplets' boot work; a run
     where only the script's init wins it has a ratio of 1.4-1.7.
`

// processRows runs the process-runtime benchmarks on local agents.
func processRows(parts string, runs, logRuns, tasks, nodes, slots, lines int) (rows []row, err error) {
	b, err := newBench(nodes, slots)
	if err != nil {
		return nil, err
	}
	defer b.close(30 * time.Second)
	for _, part := range []struct {
		name string
		run  func() ([]row, error)
	}{
		{"a", func() ([]row, error) { return b.sweepRows(runs, tasks, nodes*slots) }},
		{"b", func() ([]row, error) { return b.logRows(logRuns, lines) }},
		{"T", func() ([]row, error) { return b.tlsRows(30) }},
	} {
		if !strings.Contains(parts, part.name) {
			continue
		}
		r, err := part.run()
		rows = append(rows, r...)
		if err != nil {
			return rows, fmt.Errorf("%w\ncoordinator log tail:\n%s", err, b.logTail())
		}
	}
	return rows, nil
}

// swarmRows runs the swarm benchmarks on a fresh 3-node swarm and tears it
// down; teardown says how that went.
func swarmRows(parts string, runs, tasks, lines int, stageBytes int64) (rows []row, teardown string, err error) {
	ctx := context.Background()
	s, err := startSwarm(ctx, 3, 2)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\ncoordinator log tail:\n%s", err, s.logTail())
		}
		if cerr := s.close(); cerr != nil {
			err = fmt.Errorf("tear down: %w (after: %v)", cerr, err)
			teardown = "swarm teardown failed"
		} else {
			teardown = "swarm torn down: `ip netns list` shows no " + swarmName + " namespace"
		}
	}()
	for _, part := range []struct {
		name string
		run  func() ([]row, error)
	}{
		{"a", func() ([]row, error) { return s.swarmSweepRows(ctx, runs, tasks) }},
		{"b", func() ([]row, error) { return s.swarmLogRows(ctx, runs, lines) }},
		{"c", func() ([]row, error) { return s.swarmStageRows(ctx, runs, stageBytes) }},
	} {
		if !strings.Contains(parts, part.name) {
			continue
		}
		r, err := part.run()
		rows = append(rows, r...)
		if err != nil {
			return rows, "", err
		}
	}
	return rows, "", nil
}

// swarmNotes says how the swarm rows are measured.
const swarmNotes = `
  a) cloudml: submit to the end of logs -f; API: first ServiceCreate to the last task seen
     complete (polled every 100ms). Both: 3 nodes x 2 slots, 1 CPU reserved per task.
  b) distinct lines received. Submit to last line: cloudml-client submit --follow, from
     spawning it to the last line it printed, against busybox seq (the image's) with its
     stdout on a file on the host, from spawn to exit. Against docker service logs -f --raw
     on the manager (stopped once the task completed and no line came for 3s): first to
     last line, and from submit (ServiceCreate) to the last line.
  c) submit to the last node's "job staged" report (agent log, ReportStage's bytes_downloaded);
     every node stages at once; curl runs in the nodes' namespaces, through the bridge.
     The baseline is curl -o FILE on the disk the caches are on: staging keeps the object,
     so a user's download must too. curl to /dev/null (stores nothing) is shown beside it.
     Second staging: the nodes' reported bytes_downloaded; beside it, the caches' growth.
`

// row is one line of the report.
type row struct {
	name, cloudml, baseline, ratio, goal string
}

func printRows(title string, rows []row) {
	fmt.Printf("\n%s\n\n", title)
	fmt.Printf("%-48s %22s %26s %7s  %s\n", "measurement", "cloudml", "baseline", "ratio", "goal")
	for _, r := range rows {
		fmt.Printf("%-48s %22s %26s %7s  %s\n", r.name, r.cloudml, r.baseline, r.ratio, r.goal)
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianF(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
