package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider"
)

// Name is the local provider's registry name.
const Name = "local"

// DefaultAgentBinary is the agent's program name.
const DefaultAgentBinary = "cloudml-agent"

// StopTimeout is how long a child gets between SIGTERM and SIGKILL.
const StopTimeout = 10 * time.Second

// ErrAgentNotFound means the agent binary could not be found.
var ErrAgentNotFound = errors.New("agent binary not found")

// Config configures the local provider.
type Config struct {
	// Slots is each agent's --slots and the cap in its join token when a
	// create asks for none; 0 leaves the agent's default (its CPU count).
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
	// Restart is how soon an agent that exited is started again; zero
	// durations are DefaultRestartPolicy's.
	Restart RestartPolicy
}

// DefaultConfig returns the agent's default slots, log level "info" and
// DefaultRestartPolicy.
func DefaultConfig() Config {
	return Config{LogLevel: "info", Restart: DefaultRestartPolicy()}
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Slots < 0 {
		return fmt.Errorf("slots must not be negative, got %d", c.Slots)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c.Restart.Validate()
}

// Provider runs local agents: node i is an agent process with work dir
// WorkDir/node-i, provider id "node-i". Node numbers count up from 1 at
// each start and are not reused within one, so a coordinator started again
// gives node-1 its old work dir, and with it its old identity.
type Provider struct {
	cfg Config
	log hclog.Logger

	mu     sync.Mutex // protects bin, addr, agents, next, closed
	bin    string
	addr   string
	agents *Agents // nil before Start
	next   int     // number of the last node made
	closed bool
}

var _ provider.Provider = (*Provider)(nil)

// New returns a provider; WorkDir must be set.
func New(cfg Config, log hclog.Logger) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("work dir is required")
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Provider{cfg: cfg, log: log}, nil
}

// Name returns "local".
func (p *Provider) Name() string { return Name }

// ResolveAgent finds the agent binary: AgentBinary if set (a bare name is
// looked up on PATH), else cloudml-agent beside the running executable,
// else on PATH.
func (p *Provider) ResolveAgent() (string, error) {
	return ResolveAgent(p.cfg.AgentBinary)
}

// ResolveAgent finds the agent binary called name (see
// Provider.ResolveAgent); the netns provider uses it too.
func ResolveAgent(name string) (string, error) {
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

// Args returns the argv (without the program) of node i's agent dialing
// addr with slots (0: no --slots).
func (p *Provider) Args(i int, addr string, slots int) []string {
	args := []string{
		"--coordinator", addr,
		"--work-dir", p.workDir(i),
	}
	if slots > 0 {
		args = append(args, "--slots", strconv.Itoa(slots))
	}
	return append(args, "--log-level", p.cfg.LogLevel)
}

func (p *Provider) workDir(i int) string {
	return filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
}

// Start resolves the agent binary (ErrAgentNotFound says to run make
// build) and binds the provider to the coordinator at t.Addr.
func (p *Provider) Start(ctx context.Context, t provider.Target) error {
	bin, err := p.ResolveAgent()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return provider.ErrNotStarted
	case p.agents != nil:
		return errors.New("already started")
	}
	p.bin, p.addr, p.agents = bin, t.Addr, NewAgents(t, p.cfg.Restart)
	return nil
}

// started returns the agents, or ErrNotStarted before Start.
func (p *Provider) started() (*Agents, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.agents == nil {
		return nil, provider.ErrNotStarted
	}
	return p.agents, nil
}

// Create starts req.Count agents, each with join tokens labelled
// "local node-<i>" and capped at req.Slots (or Config.Slots), and returns
// their nodes. It knows one size, "" (this machine). On error the nodes
// returned run; no other was made.
func (p *Provider) Create(ctx context.Context, req provider.CreateRequest) ([]provider.Node, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Size != "" {
		return nil, fmt.Errorf("%w: size %q: the local provider has one size, \"\" (this machine)", provider.ErrInvalid, req.Size)
	}
	slots := cmp.Or(req.Slots, p.cfg.Slots)
	p.mu.Lock()
	agents, bin, addr := p.agents, p.bin, p.addr
	first := p.next + 1
	if agents != nil {
		p.next += req.Count
	}
	p.mu.Unlock()
	if agents == nil {
		return nil, provider.ErrNotStarted
	}
	var made []provider.Node
	for i := first; i < first+req.Count; i++ {
		if err := ctx.Err(); err != nil {
			return made, err
		}
		id := "node-" + strconv.Itoa(i)
		args := p.Args(i, addr, slots)
		n, err := agents.Start(Agent{
			Node: provider.Node{
				ID: id, Name: id, Pool: req.Pool, Request: req.Request,
				PrivateIP: netip.AddrFrom4([4]byte{127, 0, 0, 1}),
			},
			Label: "local " + id, Slots: slots, WorkDir: p.workDir(i),
			Command: func() *exec.Cmd { return exec.Command(bin, args...) },
			Env:     p.cfg.Env,
			Log:     p.log.Named("agent-"+strconv.Itoa(i)).With("work_dir", p.workDir(i)),
		})
		if err != nil {
			return made, fmt.Errorf("agent %d: %w", i, err)
		}
		made = append(made, n)
	}
	return made, nil
}

// Delete stops each node's agent (SIGTERM, SIGKILL after StopTimeout) and
// removes its work dir (see Agents.Delete). Unknown ids are gone already.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	agents, err := p.started()
	if err != nil {
		return err
	}
	return agents.Delete(ids)
}

// List returns the nodes made and not deleted, sorted by id (see
// Agents.List).
func (p *Provider) List(ctx context.Context) ([]provider.Node, error) {
	agents, err := p.started()
	if err != nil {
		return nil, err
	}
	return agents.List(), nil
}

// Reconcile is provider.ReconcileByList: exited agents are restarted all
// along by their supervision, so there is nothing more to keep running.
func (p *Provider) Reconcile(ctx context.Context, req provider.ReconcileRequest) (provider.ReconcileReport, error) {
	return provider.ReconcileByList(ctx, p, req)
}

// Close stops every agent (SIGTERM, SIGKILL after StopTimeout) and returns
// once all exited; work dirs stay, for the next start. Afterwards the
// provider lists nothing and creates nothing.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	agents := p.agents
	p.mu.Unlock()
	if agents != nil {
		agents.Close()
	}
	return nil
}
