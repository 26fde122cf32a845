package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

var (
	// ErrNoDockerd is returned by daemon operations on a cluster created
	// without Config.Dockerd.
	ErrNoDockerd = errors.New("cluster has no dockerd")
	// ErrNoSuchNode is returned for a node index out of range.
	ErrNoSuchNode = errors.New("no such node")
	// ErrClosed is returned by operations on a closed cluster.
	ErrClosed = errors.New("cluster closed")
)

// Node is one namespace of a cluster.
type Node struct {
	// Name is the namespace's name, "<prefix>-n<i>".
	Name string
	// NetnsPath is the namespace file, for nsenter --net.
	NetnsPath string
	// Addr is the node's address on the bridge.
	Addr string
	// DockerHost is the node's daemon ("unix:///run/cloudml-netns/...");
	// empty without Config.Dockerd.
	DockerHost string
	// Dir is the node's directory below WorkDir (data root, daemon log);
	// empty without a WorkDir.
	Dir string
}

// Cluster is a bridge, one network namespace per node and, with
// Config.Dockerd, one dockerd per namespace. It is safe for concurrent use.
type Cluster struct {
	cfg       Config
	log       hclog.Logger
	subnet    netip.Prefix
	nodes     []Node
	mu        sync.Mutex // protects daemons and closed
	daemons   []*daemon  // nil entry: that node's dockerd is stopped
	closed    bool
	closeOnce sync.Once
	closeErr  error // result of the first Close
}

// Create builds a cluster. It first removes the leftovers of an earlier run
// with the same name and of runs whose owning process died (see Cleanup and
// CleanupStale). On any error it tears down what it built.
func Create(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := Check(); err != nil {
		return nil, err
	}
	start := time.Now()
	log := cfg.Logger.Named("netns").With("cluster", cfg.Name)
	c := &Cluster{cfg: cfg, log: log, daemons: make([]*daemon, cfg.Nodes)}
	if err := c.createNetwork(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	log.Info("network created", "subnet", c.subnet, "nodes", cfg.Nodes, "elapsed", time.Since(start).Round(time.Millisecond))
	if cfg.Dockerd {
		if err := c.startAll(ctx); err != nil {
			return nil, errors.Join(err, c.Close())
		}
	}
	log.Info("cluster created", "elapsed", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// createNetwork claims the name and a subnet under the run-dir lock, then
// builds the bridge and the namespaces.
func (c *Cluster) createNetwork(ctx context.Context) error {
	unlock, err := lockRunDir()
	if err != nil {
		return err
	}
	defer func() {
		if unlock != nil {
			unlock()
		}
	}()
	if err := cleanup(ctx, c.cfg.Name, c.log); err != nil {
		return fmt.Errorf("clean up an earlier run of %s: %w", c.cfg.Name, err)
	}
	for _, prefix := range stalePrefixes() {
		c.log.Warn("removing leftovers of a dead run", "prefix", prefix)
		if err := cleanup(ctx, prefix, c.log); err != nil {
			c.log.Warn("stale cleanup failed", "prefix", prefix, "error", err)
		}
	}
	subnet, err := chooseSubnet(ctx, c.cfg.Subnet)
	if err != nil {
		return err
	}
	c.subnet = subnet
	ownerStart, _ := procStartTime(os.Getpid())
	if err := writeState(state{Prefix: c.cfg.Name, OwnerPID: os.Getpid(), OwnerStart: ownerStart, WorkDir: c.cfg.WorkDir, Subnet: subnet.String(), Nodes: c.cfg.Nodes}); err != nil {
		return err
	}
	if err := createBridge(ctx, c.cfg.Name, subnet); err != nil {
		return err
	}
	unlock()
	unlock = nil
	for i := range c.cfg.Nodes {
		if err := createNode(ctx, c.cfg.Name, subnet, i); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		n := Node{Name: nsName(c.cfg.Name, i), NetnsPath: netnsPath(nsName(c.cfg.Name, i)), Addr: nodeAddr(subnet, 10+i).String()}
		if c.cfg.WorkDir != "" {
			n.Dir = filepath.Join(c.cfg.WorkDir, n.Name)
		}
		if c.cfg.Dockerd {
			n.DockerHost = "unix://" + socketPath(c.cfg.Name, i)
		}
		c.nodes = append(c.nodes, n)
	}
	return nil
}

// Name returns the cluster's prefix.
func (c *Cluster) Name() string { return c.cfg.Name }

// Nodes returns the cluster's nodes, node i at index i.
func (c *Cluster) Nodes() []Node { return append([]Node(nil), c.nodes...) }

// Subnet returns the bridge's subnet.
func (c *Cluster) Subnet() netip.Prefix { return c.subnet }

// HostAddr returns the bridge's address on the host: a server listening on
// it (or on 0.0.0.0) is reachable from every node.
func (c *Cluster) HostAddr() string { return nodeAddr(c.subnet, 1).String() }

// Command returns a command that runs name inside node's network namespace
// (through nsenter; the mount namespace stays the host's) with DOCKER_HOST
// set to the node's daemon. An out-of-range node gives a command whose
// Start fails.
func (c *Cluster) Command(ctx context.Context, node int, name string, args ...string) *exec.Cmd {
	if node < 0 || node >= len(c.nodes) {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Err = fmt.Errorf("%w: %d", ErrNoSuchNode, node)
		return cmd
	}
	n := c.nodes[node]
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.NetnsPath, "--", name}, args...)...)
	cmd.Env = os.Environ()
	if n.DockerHost != "" {
		cmd.Env = append(cmd.Env, "DOCKER_HOST="+n.DockerHost)
	}
	return cmd
}

// Close stops the daemons (running containers are killed first; then
// SIGTERM, SIGKILL after StopTimeout), kills every other process left in
// the namespaces, unmounts everything below the node directories and the
// run dir, and deletes the namespaces, veths, bridge and iptables rule.
// It is idempotent and returns the first call's error.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.teardown() })
	return c.closeErr
}

func (c *Cluster) teardown() error {
	c.mu.Lock()
	c.closed = true
	daemons := append([]*daemon(nil), c.daemons...)
	c.mu.Unlock()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*c.cfg.StopTimeout+time.Minute)
	defer cancel()
	var errs []error
	if c.cfg.Dockerd {
		c.killContainers(ctx, daemons)
		var wg sync.WaitGroup
		stopErrs := make([]error, len(daemons))
		for i, d := range daemons {
			if d != nil {
				wg.Go(func() { stopErrs[i] = c.stopDaemon(i, d) })
			}
		}
		wg.Wait()
		errs = append(errs, stopErrs...)
	}
	errs = append(errs, cleanup(ctx, c.cfg.Name, c.log))
	err := errors.Join(errs...)
	c.log.Info("cluster closed", "elapsed", time.Since(start).Round(time.Millisecond), "error", err)
	return err
}
