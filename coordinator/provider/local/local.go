package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/logging"
)

// DefaultAgentBinary is the agent's program name.
const DefaultAgentBinary = "cloudml-agent"

// StopTimeout is how long a child gets between SIGTERM and SIGKILL.
const StopTimeout = 10 * time.Second

// ErrAgentNotFound means the agent binary could not be found.
var ErrAgentNotFound = errors.New("agent binary not found")

// Config configures the local provider.
type Config struct {
	// Nodes is how many agents to start.
	Nodes int
	// Slots is passed as --slots when > 0; 0 leaves the agent's default.
	Slots int
	// AgentBinary is the agent program; empty means "cloudml-agent" beside
	// the running executable, then on PATH.
	AgentBinary string
	// WorkDir holds each node's work dir (WorkDir/node-<i>); the coordinator
	// defaults it to StateDir/nodes.
	WorkDir string
	// Env is added to the coordinator's environment for the agents.
	Env []string
	// LogLevel is passed as --log-level; default "info".
	LogLevel string
}

// DefaultConfig returns two nodes at the agent's default slots.
func DefaultConfig() Config {
	return Config{Nodes: 2, LogLevel: "info"}
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Nodes < 1 {
		return fmt.Errorf("nodes must be at least 1, got %d", c.Nodes)
	}
	if c.Slots < 0 {
		return fmt.Errorf("slots must not be negative, got %d", c.Slots)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return nil
}

// Target is where the agents connect.
type Target struct {
	// Addr is the coordinator's host:port.
	Addr string
	// Token is the bootstrap token.
	Token string
}

// Provider runs local agents.
type Provider struct {
	cfg Config
	log hclog.Logger
}

// New returns a provider; WorkDir must be set.
func New(cfg Config, log hclog.Logger) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("local provider: work dir is required")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Provider{cfg: cfg, log: log}, nil
}

// ResolveAgent finds the agent binary: AgentBinary if set (a bare name is
// looked up on PATH), else cloudml-agent beside the running executable,
// else on PATH.
func (p *Provider) ResolveAgent() (string, error) {
	name := p.cfg.AgentBinary
	if name == "" {
		if exe, err := os.Executable(); err == nil {
			beside := filepath.Join(filepath.Dir(exe), DefaultAgentBinary)
			if isExecutable(beside) {
				return beside, nil
			}
		}
		name = DefaultAgentBinary
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %q (%v); run `make build` to build bin/cloudml-agent, or pass its path", ErrAgentNotFound, name, err)
	}
	return path, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Args returns the argv (without the program) of node i.
func (p *Provider) Args(i int, t Target) []string {
	args := []string{
		"--coordinator", t.Addr,
		"--token", t.Token,
		"--work-dir", filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i)),
	}
	if p.cfg.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(p.cfg.Slots))
	}
	return append(args, "--log-level", p.cfg.LogLevel)
}

// Run starts the agents and keeps them until ctx ends, then stops them
// (SIGTERM, SIGKILL after StopTimeout) and returns once every child exited.
// A child that exits early is logged, not restarted.
func (p *Provider) Run(ctx context.Context, t Target) error {
	bin, err := p.ResolveAgent()
	if err != nil {
		return err
	}
	var children []*child
	defer func() {
		var wg sync.WaitGroup
		for _, ch := range children {
			wg.Add(1)
			go func() { defer wg.Done(); ch.stop() }()
		}
		wg.Wait()
	}()
	for i := 1; i <= p.cfg.Nodes; i++ {
		ch, err := p.start(bin, i, t)
		if err != nil {
			return err
		}
		children = append(children, ch)
	}
	<-ctx.Done()
	return nil
}

type child struct {
	cmd    *exec.Cmd
	log    hclog.Logger
	exited chan struct{} // closed once Wait returned
}

func (p *Provider) start(bin string, i int, t Target) (*child, error) {
	log := p.log.Named("agent-" + strconv.Itoa(i))
	workDir := filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, fmt.Errorf("create work dir of node %d: %w", i, err)
	}
	cmd := exec.Command(bin, p.Args(i, t)...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout := logging.NewLineWriter(log, "stdout")
	stderr := logging.NewLineWriter(log, "stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A task that inherited the agent's output must not hold up Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent %d (%s): %w", i, bin, err)
	}
	log.Info("agent started", "pid", cmd.Process.Pid, "work_dir", workDir)
	ch := &child{cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		stdout.Flush()
		stderr.Flush()
		log.Info("agent exited", "pid", cmd.Process.Pid, "status", exitStatus(err))
		close(ch.exited)
	}()
	return ch, nil
}

func (ch *child) stop() {
	select {
	case <-ch.exited:
		return
	default:
	}
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(StopTimeout)
	defer timer.Stop()
	select {
	case <-ch.exited:
	case <-timer.C:
		ch.log.Warn("agent did not stop after SIGTERM; killing it", "pid", ch.cmd.Process.Pid)
		_ = ch.cmd.Process.Kill()
		<-ch.exited
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
