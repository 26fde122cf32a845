package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	cluster "github.com/cloudml/cloudml/internal/netns"
)

// Name is the netns provider's registry name.
const Name = "netns"

// ErrUnreachableTarget means the coordinator's address cannot be reached
// from the namespaces (a loopback address).
var ErrUnreachableTarget = errors.New("coordinator address unreachable from the namespaces")

// ErrNotSetUp is returned by calls that need the cluster before Setup.
var ErrNotSetUp = errors.New("netns cluster not set up")

// Config configures the netns provider.
type Config struct {
	// Nodes is how many namespaces and daemons the cluster has: the most
	// nodes (agents) it can run at once.
	Nodes int
	// Slots is each agent's --slots and the cap in its join token when a
	// create asks for none; 0 leaves the agent's default.
	Slots int
	// AgentBinary is the agent program; empty means "cloudml-agent" beside
	// the running executable, then on PATH.
	AgentBinary string
	// WorkDir holds each agent's work dir (WorkDir/node-<i>) and the
	// daemons' data roots (WorkDir/docker).
	WorkDir string
	// Env is added to the coordinator's environment for the agents.
	Env []string
	// LogLevel is passed as --log-level; default "info".
	LogLevel string
	// Name prefixes the cluster's namespaces, links and rules; default
	// "cml". Two coordinators on one machine need different names.
	Name string
	// Subnet of the bridge; empty picks a free 10.213.X.0/24.
	Subnet string
	// Restart is how soon an agent that exited is started again; zero
	// durations are local.DefaultRestartPolicy's.
	Restart local.RestartPolicy
}

// DefaultConfig returns three nodes named "cml" at the agent's default
// slots, restarted after local.DefaultRestartPolicy's delays.
func DefaultConfig() Config {
	return Config{Nodes: 3, LogLevel: "info", Name: "cml", Restart: local.DefaultRestartPolicy()}
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if c.Nodes < 1 || c.Nodes > cluster.MaxNodes {
		return fmt.Errorf("nodes must be 1-%d, got %d", cluster.MaxNodes, c.Nodes)
	}
	if c.Slots < 0 {
		return fmt.Errorf("slots must not be negative, got %d", c.Slots)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Name == "" {
		c.Name = "cml"
	}
	if err := c.Restart.Validate(); err != nil {
		return err
	}
	cc := c.clusterConfig(nil)
	return cc.Validate()
}

func (c *Config) clusterConfig(log hclog.Logger) cluster.Config {
	cc := cluster.DefaultConfig()
	cc.Name, cc.Nodes, cc.Subnet, cc.Logger = c.Name, c.Nodes, c.Subnet, log
	cc.WorkDir = filepath.Join(c.WorkDir, "docker")
	return cc
}

// Provider runs a namespace cluster: its namespaces and daemons are made
// once (Prepare or Start) and are the machines; a node is an agent started
// in a namespace that has none. Its provider id, "<namespace>-<k>", is not
// reused when a later node runs in the same namespace; its name is the
// namespace's.
type Provider struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex // protects cluster, bin, addr, agents, closed
	cluster *cluster.Cluster
	bin     string
	addr    string        // the agents dial it
	agents  *local.Agents // nil before Start
	closed  bool

	createMu sync.Mutex // protects ids, gens: one create picks free namespaces at a time
	ids      []string   // by namespace index: the id of its last node
	gens     []int      // by namespace index: how many nodes it had
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Preparer = (*Provider)(nil)
)

// New returns a provider; WorkDir must be set. It fails with netns.Check's
// error when this machine cannot host namespaces and daemons.
func New(cfg Config, log hclog.Logger) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WorkDir == "" {
		return nil, errors.New("work dir is required")
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	cfg.WorkDir = abs
	if err := cluster.Check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Provider{cfg: cfg, log: log}, nil
}

// Name returns "netns".
func (p *Provider) Name() string { return Name }

// Setup creates the cluster (namespaces, bridge, daemons) if it does not
// exist yet, so that the coordinator can listen on ListenAddr before
// Start.
func (p *Provider) Setup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return provider.ErrNotStarted
	}
	if p.cluster != nil {
		return nil
	}
	c, err := cluster.Create(ctx, p.cfg.clusterConfig(p.log))
	if err != nil {
		return fmt.Errorf("build the cluster: %w", err)
	}
	p.cluster = c
	return nil
}

// Cluster returns the cluster after Setup (nil before): tests use it to
// reach the nodes' daemons or stop one.
func (p *Provider) Cluster() *cluster.Cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cluster
}

// HostAddr returns the bridge's address on the host after Setup, or "".
func (p *Provider) HostAddr() string {
	if c := p.Cluster(); c != nil {
		return c.HostAddr()
	}
	return ""
}

// ListenAddr returns HostAddr:port, the address a coordinator should listen
// on to be reachable from every node and nowhere else; "" before Setup.
func (p *Provider) ListenAddr(port int) string {
	h := p.HostAddr()
	if h == "" {
		return ""
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

// AgentAddr returns the address the agents dial for a coordinator listening
// on listen: a wildcard host becomes the bridge address; a loopback host is
// refused (ErrUnreachableTarget). It needs Setup.
func (p *Provider) AgentAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("coordinator address %q: %w", listen, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, _ := netip.ParseAddr(host)
	switch {
	case ip.IsLoopback():
		return "", fmt.Errorf("%w: %s; listen on the bridge address (%s) or 0.0.0.0", ErrUnreachableTarget, listen, p.HostAddr())
	case host == "" || ip.IsUnspecified():
		h := p.HostAddr()
		if h == "" {
			return "", ErrNotSetUp
		}
		return net.JoinHostPort(h, port), nil
	}
	return listen, nil
}

// Prepare is Setup, for the coordinator: it listens on the bridge address
// too, and opens the swarm ports to the cluster's subnet only.
func (p *Provider) Prepare(ctx context.Context) (provider.Prepared, error) {
	if err := p.Setup(ctx); err != nil {
		return provider.Prepared{}, err
	}
	return provider.Prepared{NodeListen: p.ListenAddr(0), PeerCIDRs: []string{p.Cluster().Subnet().String()}}, nil
}

// Args returns the argv (without the program) of the agent of node i
// (1-based) dialing coordinator at addr with slots (0: no --slots).
func (p *Provider) Args(i int, addr string, node cluster.Node, slots int) []string {
	args := []string{
		"--coordinator", addr,
		"--work-dir", p.workDir(i),
		"--address", node.Addr,
		"--hostname", node.Name,
	}
	if slots > 0 {
		args = append(args, "--slots", strconv.Itoa(slots))
	}
	return append(args, "--log-level", p.cfg.LogLevel)
}

func (p *Provider) workDir(i int) string {
	return filepath.Join(p.cfg.WorkDir, "node-"+strconv.Itoa(i))
}

// Close stops the agents (SIGTERM, SIGKILL after local.StopTimeout) and
// tears the cluster down, leaving nothing behind. It is idempotent; call it
// after Setup or Prepare too.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	agents, c := p.agents, p.cluster
	p.mu.Unlock()
	if agents != nil {
		agents.Close()
	}
	if c == nil {
		return nil
	}
	return c.Close()
}
