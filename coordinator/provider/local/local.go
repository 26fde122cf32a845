package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/pki"
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
	// MintToken makes a single-use join token for one agent start; label
	// names the node, slots caps it (0: the coordinator's default cap).
	MintToken func(label string, slots int) (string, error)
}

// JoinTokenEnv returns the environment entry that hands an agent a fresh
// join token: each start gets its own (a restarted agent that already has
// its certificate ignores it, and the token expires unused).
func (t Target) JoinTokenEnv(label string, slots int) (string, error) {
	if t.MintToken == nil {
		return "", errors.New("no way to mint a join token for the agent")
	}
	tok, err := t.MintToken(label, slots)
	if err != nil {
		return "", fmt.Errorf("mint a join token for %s: %w", label, err)
	}
	return pki.JoinTokenEnv + "=" + tok, nil
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
		"--work-dir", filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i)),
	}
	if p.cfg.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(p.cfg.Slots))
	}
	return append(args, "--log-level", p.cfg.LogLevel)
}

// Run starts the agents and keeps them running until ctx ends (an agent
// that exits is restarted; see Supervise), then stops them (SIGTERM,
// SIGKILL after StopTimeout) and returns once every child exited.
func (p *Provider) Run(ctx context.Context, t Target) error {
	bin, err := p.ResolveAgent()
	if err != nil {
		return err
	}
	var agents []*Supervised
	defer func() {
		for _, a := range agents {
			a.Wait()
		}
	}()
	ctx, cancel := context.WithCancel(ctx) // also stops the started agents if one fails to start
	defer cancel()
	for i := 1; i <= p.cfg.Nodes; i++ {
		workDir := filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
		if err := os.MkdirAll(workDir, 0o700); err != nil {
			return fmt.Errorf("create work dir of node %d: %w", i, err)
		}
		log := p.log.Named("agent-"+strconv.Itoa(i)).With("work_dir", workDir)
		args := p.Args(i, t)
		label := "local node-" + strconv.Itoa(i)
		a, err := Supervise(ctx, log, func() (*exec.Cmd, error) {
			tok, err := t.JoinTokenEnv(label, p.cfg.Slots)
			if err != nil {
				return nil, err
			}
			cmd := exec.Command(bin, args...)
			cmd.Env = append(append(os.Environ(), p.cfg.Env...), tok)
			return cmd, nil
		})
		if err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
		agents = append(agents, a)
	}
	<-ctx.Done()
	return nil
}
