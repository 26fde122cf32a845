package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudml/cloudml/internal/simagent"
)

// Simulated agents in a process of their own: the bench runs itself again
// as `bench cp-agents` (agentsMain), which runs a simagent fleet, prints
// "ready" once every node's first session started, and when its stdin
// closes stops the fleet and prints the fleet's simagent.Snapshot as JSON.
// The heartbeat probe of part C is such a child, and so are the N agents
// with -cp-agents-proc.

// cpAgentsCmd is the hidden subcommand that runs agentsMain.
const cpAgentsCmd = "cp-agents"

// cpTokenEnv hands the join token to the child (kept off its command line).
const cpTokenEnv = "CLOUDML_BENCH_JOIN_TOKEN"

// agentsMain is `bench cp-agents`: a fleet until stdin closes.
func agentsMain(args []string) error {
	cfg := simagent.DefaultConfig()
	fs := flag.NewFlagSet(cpAgentsCmd, flag.ContinueOnError)
	fs.StringVar(&cfg.Addr, "addr", "", "the coordinator's host:port")
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated agents")
	fs.IntVar(&cfg.Slots, "slots", cfg.Slots, "slots per agent")
	fs.StringVar(&cfg.HostnamePrefix, "prefix", cfg.HostnamePrefix, "hostname prefix")
	fs.DurationVar(&cfg.HeartbeatPeriod, "heartbeat", 0, "heartbeat period (0: the coordinator's)")
	fs.BoolVar(&cfg.SingleReports, "single-reports", false, "one ReportTask call per report instead of the agent's batches")
	fs.BoolVar(&cfg.SeparateLogs, "separate-logs", false, "each attempt's log line in a PublishLogs call of its own")
	fs.BoolVar(&cfg.ReportStaging, "report-staging", false, "report STAGING before RUNNING")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.JoinToken = os.Getenv(cpTokenEnv)
	fleet, err := simagent.New(cfg)
	if err != nil {
		return err
	}
	rec := fleet.Recorder()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- fleet.Run(ctx) }()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(closed)
	}()
	for ready := false; !ready; {
		select {
		case err := <-ran:
			return fmt.Errorf("the simulated agents stopped before all were ready: %v", err)
		case <-closed:
			return errors.New("stdin closed before every node was ready")
		case <-time.After(20 * time.Millisecond): // polling interval
			seen, _ := rec.Ready()
			ready = seen == cfg.Nodes
		}
	}
	fmt.Println("ready")
	<-closed
	stop()
	err = <-ran
	if jerr := json.NewEncoder(os.Stdout).Encode(rec.Snapshot()); jerr != nil {
		return jerr
	}
	return err
}

// agentsConfig is what a child fleet runs.
type agentsConfig struct {
	addr, token   string
	nodes, slots  int
	prefix        string
	heartbeat     time.Duration // 0: the coordinator's period
	here          bool          // in this process instead of a child
	single        bool          // one ReportTask call per report (-cp-single-reports)
	separateLogs  bool          // log lines in PublishLogs calls (-cp-separate-logs)
	reportStaging bool          // STAGING before RUNNING (-cp-report-staging)
}

// agents is a running fleet, here or in a child process.
type agents interface {
	// waitReady returns once every node's first session started.
	waitReady(timeout time.Duration) error
	// pid is the process the fleet runs in.
	pid() int
	// stop ends the fleet and returns what it recorded; it may be called
	// more than once.
	stop() (*simagent.Recorder, error)
}

// startAgents starts a fleet as cfg says.
func startAgents(cfg agentsConfig) (agents, error) {
	if cfg.here {
		return startAgentsHere(cfg)
	}
	return startAgentsProc(cfg)
}

// agentsHere is a fleet in the bench process.
type agentsHere struct {
	n    int
	rec  *simagent.Recorder
	ran  chan error
	halt context.CancelFunc
	once sync.Once
	err  error
}

func startAgentsHere(cfg agentsConfig) (*agentsHere, error) {
	scfg := simagent.DefaultConfig()
	scfg.Addr, scfg.JoinToken, scfg.Nodes, scfg.Slots = cfg.addr, cfg.token, cfg.nodes, cfg.slots
	scfg.HostnamePrefix, scfg.HeartbeatPeriod, scfg.SingleReports = cfg.prefix, cfg.heartbeat, cfg.single
	scfg.SeparateLogs, scfg.ReportStaging = cfg.separateLogs, cfg.reportStaging
	fleet, err := simagent.New(scfg)
	if err != nil {
		return nil, err
	}
	ctx, halt := context.WithCancel(context.Background())
	a := &agentsHere{n: cfg.nodes, rec: fleet.Recorder(), ran: make(chan error, 1), halt: halt}
	go func() { a.ran <- fleet.Run(ctx) }()
	return a, nil
}

func (a *agentsHere) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		seen, _ := a.rec.Ready()
		if seen == a.n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d simulated agents ready after %s; errors: %v", seen, a.n, timeout, a.rec.Errors())
		}
		select {
		case err := <-a.ran:
			a.ran <- err // for stop
			return fmt.Errorf("the simulated agents stopped: %v", err)
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
}

func (a *agentsHere) pid() int { return os.Getpid() }

func (a *agentsHere) stop() (*simagent.Recorder, error) {
	a.once.Do(func() {
		a.halt()
		a.err = <-a.ran
	})
	return a.rec, a.err
}

// agentsProc is a fleet in a child process: this binary run as
// `cp-agents`.
type agentsProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chan struct{} // closed at the child's "ready" line
	done  chan struct{} // closed when the child exited; snap and err are set then
	snap  simagent.Snapshot
	err   error
}

func startAgentsProc(cfg agentsConfig) (*agentsProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	argv := []string{exe, cpAgentsCmd, "-addr", cfg.addr, "-nodes", strconv.Itoa(cfg.nodes),
		"-slots", strconv.Itoa(cfg.slots), "-prefix", cfg.prefix, "-heartbeat", cfg.heartbeat.String(),
		"-single-reports=" + strconv.FormatBool(cfg.single), "-separate-logs=" + strconv.FormatBool(cfg.separateLogs),
		"-report-staging=" + strconv.FormatBool(cfg.reportStaging)}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), cpTokenEnv+"="+cfg.token)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	p := &agentsProc{cmd: cmd, stdin: stdin, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.snap, p.err = readAgentsReport(stdout, p.ready)
		if werr := cmd.Wait(); werr != nil {
			p.err = errors.Join(p.err, fmt.Errorf("%s %s: %w", cpAgentsCmd, cfg.prefix, werr))
		}
	}()
	return p, nil
}

// readAgentsReport reads a cp-agents child's stdout: "ready" (closing
// ready), then the Snapshot it prints when told to stop.
func readAgentsReport(r io.Reader, ready chan<- struct{}) (simagent.Snapshot, error) {
	var snap simagent.Snapshot
	br := bufio.NewReader(r)
	line, err := br.ReadString('\n')
	if line != "ready\n" {
		return snap, fmt.Errorf("the agents' process did not say ready (%q, %v)", line, err)
	}
	close(ready)
	if err := json.NewDecoder(br).Decode(&snap); err != nil {
		return snap, fmt.Errorf("the agents' process's report: %w", err)
	}
	return snap, nil
}

func (p *agentsProc) waitReady(timeout time.Duration) error {
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("the agents' process exited before it was ready: %w", p.err)
	case <-time.After(timeout):
		return fmt.Errorf("the agents' process not ready after %s", timeout)
	}
}

func (p *agentsProc) pid() int { return p.cmd.Process.Pid }

func (p *agentsProc) stop() (*simagent.Recorder, error) {
	p.stdin.Close() // a second close only returns an error
	<-p.done
	if p.err != nil {
		return nil, p.err
	}
	return simagent.FromSnapshot(p.snap), nil
}
