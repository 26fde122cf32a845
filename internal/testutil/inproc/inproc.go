package inproc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cloudml/cloudml/agent"
	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/internal/pki"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Config configures a Cluster.
type Config struct {
	// Dir holds the coordinator's state (Dir/state, its admin credential
	// in it), the bucket (Dir/bucket) and the agents' work directories;
	// required. A Cluster started again on the same Dir finds its state.
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
	// Coordinator, if set, adjusts the coordinator's configuration.
	Coordinator func(*coordinator.Config)
}

// Cluster is a running coordinator and its agents, on an in-memory
// listener, over TLS as on a real cluster.
type Cluster struct {
	// Coordinator is the coordinator.
	Coordinator *coordinator.Coordinator
	// Bucket is the default bucket's URL (file://).
	Bucket string
	// Config is the coordinator's configuration.
	Config coordinator.Config

	cfg    Config
	admin  *pki.Credential
	lis    *bufconn.Listener
	cancel context.CancelFunc
	agents []context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // protects errs and expected
	errs   []error
	// expected are substrings of agent errors a test caused on purpose
	// (ExpectAgentError): they end an agent without failing Close.
	expected []string
	closeMu  sync.Once
}

// Target is the gRPC target that, with Dialer, reaches the coordinator.
const Target = "passthrough:///bufnet"

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
	ccfg.AdminConfig = filepath.Join(ccfg.StateDir, "admin.config")
	ccfg.DefaultBucket = "file://" + bucketDir
	ccfg.HeartbeatPeriod = 200 * time.Millisecond
	ccfg.NodeDownAfter = 30 * time.Second // a loaded machine must not find a silent node
	ccfg.Logger = cfg.Logger.Named("coordinator")
	if cfg.Coordinator != nil {
		cfg.Coordinator(&ccfg)
	}
	co, err := coordinator.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("inproc: coordinator: %w", err)
	}
	c := &Cluster{Coordinator: co, Bucket: ccfg.DefaultBucket, Config: ccfg, cfg: cfg, lis: bufconn.Listen(1 << 20)}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() { c.fail(co.Serve(ctx, c.lis)) })
	if c.admin, err = waitCredential(ccfg.AdminConfig); err != nil {
		c.Close()
		return nil, err
	}
	for i := range cfg.Nodes {
		host := fmt.Sprintf("host-%d", i+1)
		if i < len(cfg.Hostnames) {
			host = cfg.Hostnames[i]
		}
		if err := c.StartAgent(filepath.Join(cfg.Dir, "agent-"+host), host, cfg.Slots); err != nil {
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

// waitCredential waits for the admin credential Serve writes first.
func waitCredential(path string) (*pki.Credential, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		cred, err := pki.LoadCredential(path)
		if err == nil {
			return cred, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("inproc: no admin credential at %s: %w", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Dialer reaches the in-memory listener; pair it with TLS credentials.
func (c *Cluster) Dialer() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return c.lis.DialContext(ctx) })
}

// DialOptions reach the coordinator as its admin: use them with Target.
func (c *Cluster) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{c.Dialer(), grpc.WithTransportCredentials(c.AdminCreds())}
}

// AdminCredential is the admin credential the coordinator wrote.
func (c *Cluster) AdminCredential() *pki.Credential { return c.admin }

// AdminCreds are the admin's transport credentials.
func (c *Cluster) AdminCreds() credentials.TransportCredentials {
	cfg, err := c.admin.TLS()
	if err != nil {
		panic(fmt.Sprintf("inproc: the admin credential the coordinator wrote is unusable: %v", err)) // never: it just made it
	}
	return credentials.NewTLS(cfg)
}

// CertCreds trust the coordinator's CA and present pair (nil: no
// certificate, as an agent before it registered).
func (c *Cluster) CertCreds(pair *tls.Certificate) credentials.TransportCredentials {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(c.admin.CA))
	var get func() *tls.Certificate
	if pair != nil {
		get = func() *tls.Certificate { return pair }
	}
	return credentials.NewTLS(pki.ClientTLS(pool, get))
}

// Token mints a single-use join token, as a provider does.
func (c *Cluster) Token() (string, error) { return c.Coordinator.MintToken("inproc", 0, 0) }

// StartAgent runs a real agent with work directory dir and a fresh join
// token until Close.
func (c *Cluster) StartAgent(dir, host string, slots int) error {
	tok, err := c.Token()
	if err != nil {
		return err
	}
	acfg := agent.DefaultConfig()
	acfg.CoordinatorAddr = Target
	acfg.JoinToken = tok
	acfg.WorkDir = dir
	acfg.Slots = slots
	acfg.Hostname = host
	acfg.DialOptions = []grpc.DialOption{c.Dialer()}
	acfg.BackoffMin, acfg.BackoffMax = 20*time.Millisecond, 200*time.Millisecond
	acfg.Logger = c.cfg.Logger.Named(host)
	a, err := agent.New(acfg)
	if err != nil {
		return fmt.Errorf("inproc: agent %s: %w", host, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.agents = append(c.agents, cancel)
	c.mu.Unlock()
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
	defer c.mu.Unlock()
	for _, e := range c.expected {
		if strings.Contains(err.Error(), e) {
			return
		}
	}
	c.errs = append(c.errs, err)
}

// ExpectAgentError tells Close that an agent ending with an error that
// contains substr did what the test made it do (say, a removed node whose
// used join token is refused when it registers again).
func (c *Cluster) ExpectAgentError(substr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expected = append(c.expected, substr)
}

// Close stops the agents, then the coordinator, and closes its store. It
// returns the first error any of them ran into.
func (c *Cluster) Close() error {
	c.closeMu.Do(func() {
		c.mu.Lock()
		agents := c.agents
		c.mu.Unlock()
		for _, cancel := range agents {
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
