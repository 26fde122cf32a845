package inproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cloudml/cloudml/agent"
	"github.com/cloudml/cloudml/coordinator"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Config configures a Cluster.
type Config struct {
	// Dir holds the coordinator's state, the bucket (Dir/bucket) and the
	// agents' work directories; required.
	Dir string
	// Nodes is how many agents to start; they register one after the
	// other, so the agent with Hostnames[i] is node-<i+1>.
	Nodes int
	// Slots is each agent's task slots; default 2.
	Slots int
	// Hostnames are the agents' reported hostnames; default host-1, host-2, ...
	Hostnames []string
	// Logger receives the coordinator's and agents' logs; nil discards them.
	Logger hclog.Logger
}

// Cluster is a running coordinator and its agents.
type Cluster struct {
	// Coordinator is the coordinator.
	Coordinator *coordinator.Coordinator
	// Bucket is the default bucket's URL (file://).
	Bucket string

	lis     *bufconn.Listener
	cancel  context.CancelFunc
	agents  []context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex // protects errs
	errs    []error
	closeMu sync.Once
}

// Start starts a coordinator and cfg.Nodes agents and waits until every
// node is ready.
func Start(cfg Config) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("inproc: config: dir is required")
	}
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	bucketDir := filepath.Join(cfg.Dir, "bucket")
	if err := os.MkdirAll(bucketDir, 0o755); err != nil {
		return nil, err
	}
	ccfg := coordinator.DefaultConfig()
	ccfg.StateDir = filepath.Join(cfg.Dir, "state")
	ccfg.DefaultBucket = "file://" + bucketDir
	ccfg.BootstrapToken = "inproc-token"
	ccfg.Provider = coordinator.ProviderNone
	ccfg.HeartbeatPeriod = 200 * time.Millisecond
	ccfg.NodeDownAfter = 30 * time.Second // a loaded machine must not find a silent node
	ccfg.Logger = cfg.Logger.Named("coordinator")
	co, err := coordinator.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("inproc: coordinator: %w", err)
	}
	c := &Cluster{Coordinator: co, Bucket: ccfg.DefaultBucket, lis: bufconn.Listen(1 << 20)}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() { c.fail(co.Serve(ctx, c.lis)) })
	for i := range cfg.Nodes {
		host := fmt.Sprintf("host-%d", i+1)
		if i < len(cfg.Hostnames) {
			host = cfg.Hostnames[i]
		}
		if err := c.startAgent(cfg, filepath.Join(cfg.Dir, "agent-"+host), host); err != nil {
			c.Close()
			return nil, err
		}
		if err := c.waitReady(i + 1); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// DialOptions reach the coordinator: use them with the target
// "passthrough:///bufnet".
func (c *Cluster) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return c.lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}
}

// Target is the gRPC target that, with DialOptions, reaches the coordinator.
const Target = "passthrough:///bufnet"

func (c *Cluster) startAgent(cfg Config, dir, host string) error {
	acfg := agent.DefaultConfig()
	acfg.CoordinatorAddr = Target
	acfg.BootstrapToken = "inproc-token"
	acfg.WorkDir = dir
	acfg.Slots = cfg.Slots
	acfg.Hostname = host
	acfg.DialOptions = c.DialOptions()
	acfg.BackoffMin, acfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	acfg.Logger = cfg.Logger.Named(host)
	a, err := agent.New(acfg)
	if err != nil {
		return fmt.Errorf("inproc: agent %s: %w", host, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.agents = append(c.agents, cancel)
	c.wg.Go(func() { c.fail(a.Run(ctx)) })
	return nil
}

// waitReady waits until n nodes are ready.
func (c *Cluster) waitReady(n int) error {
	conn, err := grpc.NewClient(Target, c.DialOptions()...)
	if err != nil {
		return err
	}
	defer conn.Close()
	nodes := cloudmlv1.NewClusterServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := nodes.ListNodes(context.Background(), &cloudmlv1.ListNodesRequest{})
		ready := 0
		for _, nd := range resp.GetNodes() {
			if nd.GetState() == cloudmlv1.NodeState_NODE_STATE_READY {
				ready++
			}
		}
		if err == nil && ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("inproc: %d of %d nodes ready after 30s (%v)", ready, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) fail(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

// Close stops the agents, then the coordinator, and closes its store. It
// returns the first error any of them ran into.
func (c *Cluster) Close() error {
	c.closeMu.Do(func() {
		for _, cancel := range c.agents {
			cancel()
		}
		c.cancel()
		c.wg.Wait()
		c.fail(c.Coordinator.Close())
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Join(c.errs...)
}
