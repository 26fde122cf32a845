package testcloud

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/dofake/netnsboot"
	"github.com/cloudml/cloudml/internal/netns"
)

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid testcloud config")

// Config describes a test cloud.
type Config struct {
	// Name prefixes the pool's namespaces, bridge and rules
	// (netnsboot.Config.Name); default netns.UniqueName("doc").
	Name string
	// Nodes is how many droplets can run at once; default 3.
	Nodes int
	// Subnet is the bridge's subnet; empty picks a free 10.213.X.0/24.
	Subnet string
	// WorkDir holds the daemons' data and the droplets' files; empty means
	// a temporary directory that Close removes. It must not lie below
	// /etc, /usr/local or /var/lib (see netnsboot.Config.WorkDir).
	WorkDir string
	// Bucket, when set, is a fake GCS bucket of that name served on
	// HostAddr, which the droplets' agents reach through
	// STORAGE_EMULATOR_HOST.
	Bucket string
	// Token is the API token the server accepts; default
	// dofake.DefaultToken.
	Token string
	// ActiveDelay is how long a droplet stays "new" before it boots
	// (dofake.Config.ActiveDelay); DigitalOcean takes about 30 s.
	ActiveDelay time.Duration
	// Console receives the droplets' consoles (cloud-init's output, the
	// units' output), a line each, prefixed with the droplet's name; nil
	// discards them.
	Console io.Writer
	// Logger receives the logs of the server and the pool; nil discards
	// them.
	Logger hclog.Logger
}

// Validate fills the defaults and checks c.
func (c *Config) Validate() error {
	c.Name = cmp.Or(c.Name, netns.UniqueName("doc"))
	c.Nodes = cmp.Or(c.Nodes, 3)
	c.Token = cmp.Or(c.Token, dofake.DefaultToken)
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	switch {
	case c.Nodes < 1 || c.Nodes > netnsboot.MaxNodes:
		return fmt.Errorf("%w: nodes must be 1-%d, got %d", ErrInvalidConfig, netnsboot.MaxNodes, c.Nodes)
	case c.ActiveDelay < 0:
		return fmt.Errorf("%w: negative active delay", ErrInvalidConfig)
	}
	if c.Bucket != "" {
		// The name the coordinator's --bucket gs://NAME must take.
		if _, err := bucket.Parse("gs://" + c.Bucket); err != nil || strings.Contains(c.Bucket, "/") {
			return fmt.Errorf("%w: bucket %q is not a bucket name (%v)", ErrInvalidConfig, c.Bucket, err)
		}
	}
	return nil
}

// Cloud is a running test cloud.
type Cloud struct {
	cfg    Config
	log    hclog.Logger
	tmp    string // WorkDir when Start made it, removed by Close
	booter *netnsboot.Booter
	server *dofake.Server
	gcs    *fakestorage.Server
	gcsAt  string // host:port of the bucket, "" without one
}

// Summary is what a cloud saw, as Close reports it.
type Summary struct {
	// Created and Deleted count the droplets the API created and deleted;
	// Left those still alive when the cloud closed (Close halted them).
	Created, Deleted, Left int
	// Leftovers lists what of the pool remained on this machine after
	// Close (netnsboot.Leftovers); empty when the teardown was clean.
	Leftovers []string
}

// String is "droplets created N, deleted N, left N".
func (s Summary) String() string {
	return fmt.Sprintf("droplets created %d, deleted %d, left %d", s.Created, s.Deleted, s.Left)
}

// Start builds the pool, serves the API and the metadata service (and
// the bucket), and routes 169.254.169.254 to the metadata service in
// every node. It fails with netns.Check's error on a machine that cannot
// host the pool (root, docker.io, iproute2, iptables, curl and the
// host's dockerd are needed).
func Start(ctx context.Context, cfg Config) (_ *Cloud, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cloud{cfg: cfg, log: cfg.Logger.Named("testcloud")}
	defer func() {
		if err != nil {
			_, cerr := c.Close()
			err = errors.Join(err, cerr)
		}
	}()
	work := cfg.WorkDir
	if work == "" {
		if c.tmp, err = os.MkdirTemp("", "cloudml-testcloud-"); err != nil {
			return nil, err
		}
		work = c.tmp
	}
	bcfg := netnsboot.DefaultConfig()
	bcfg.Name, bcfg.Nodes, bcfg.Subnet, bcfg.WorkDir = cfg.Name, cfg.Nodes, cfg.Subnet, work
	bcfg.Console, bcfg.Logger = cfg.Console, cfg.Logger
	c.cfg.WorkDir = work
	if c.booter, err = netnsboot.New(ctx, bcfg); err != nil {
		return nil, err
	}
	if cfg.Bucket != "" {
		if err := c.serveBucket(); err != nil {
			return nil, err
		}
	}
	dcfg := dofake.DefaultConfig()
	dcfg.Token, dcfg.ActiveDelay = cfg.Token, cfg.ActiveDelay
	dcfg.MetadataAddr = net.JoinHostPort(c.booter.HostAddr(), "0")
	dcfg.Booter, dcfg.Logger = c.booter, cfg.Logger
	dcfg.DropletLimit = max(dcfg.DropletLimit, cfg.Nodes)
	if c.server, err = dofake.Start(dcfg); err != nil {
		return nil, err
	}
	if err := c.booter.RouteMetadata(ctx, strings.TrimPrefix(c.server.MetadataURL(), "http://")); err != nil {
		return nil, err
	}
	c.log.Info("test cloud ready", "api", c.server.URL(), "host_addr", c.HostAddr(), "nodes", cfg.Nodes, "bucket", cfg.Bucket, "storage", c.gcsAt)
	return c, nil
}

// serveBucket starts fake-gcs-server on the bridge address, with the
// bucket, and tells the droplets' units where it is.
func (c *Cloud) serveBucket() error {
	host := c.booter.HostAddr()
	// An explicit port: with port 0 the fake binds loopback only.
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	c.gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: host, Port: uint16(port)})
	if err != nil {
		return fmt.Errorf("fake-gcs-server: %w", err)
	}
	c.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: c.cfg.Bucket})
	c.gcsAt = net.JoinHostPort(host, strconv.Itoa(port))
	c.booter.SetDefaultEnvironment([]string{"STORAGE_EMULATOR_HOST=" + c.gcsAt})
	return nil
}

// APIURL is the API's base URL (with the trailing slash), for
// --do-api-url.
func (c *Cloud) APIURL() string { return c.server.URL() }

// Token is the API token the server accepts, for DIGITALOCEAN_TOKEN.
func (c *Cloud) Token() string { return c.server.Token() }

// HostAddr is this machine's address on the droplets' network: serve the
// coordinator (and its agent download) there.
func (c *Cloud) HostAddr() string { return c.booter.HostAddr() }

// Subnet is the droplets' network, for --swarm-peers.
func (c *Cloud) Subnet() netip.Prefix { return c.booter.Cluster().Subnet() }

// Name is the pool's name (Config.Name), which netnsboot.Leftovers takes.
func (c *Cloud) Name() string { return c.cfg.Name }

// WorkDir is the pool's directory, which netnsboot.Leftovers takes.
func (c *Cloud) WorkDir() string { return c.cfg.WorkDir }

// Bucket is the bucket's name, "" without one.
func (c *Cloud) Bucket() string { return c.cfg.Bucket }

// StorageEmulatorHost is where the bucket is served (host:port, for
// STORAGE_EMULATOR_HOST), "" without one.
func (c *Cloud) StorageEmulatorHost() string { return c.gcsAt }

// GCS is the bucket's server, nil without one.
func (c *Cloud) GCS() *fakestorage.Server { return c.gcs }

// Server is the API server.
func (c *Cloud) Server() *dofake.Server { return c.server }

// Booter is the pool the droplets boot on.
func (c *Cloud) Booter() *netnsboot.Booter { return c.booter }

// Env is what a coordinator and a client of this cloud need, as
// NAME=value lines: DIGITALOCEAN_TOKEN, DOFAKE_API_URL, DOFAKE_HOST_ADDR,
// DOFAKE_SUBNET, DOFAKE_POOL and, with a bucket, DOFAKE_BUCKET
// (gs://name) and STORAGE_EMULATOR_HOST.
func (c *Cloud) Env() []string {
	env := []string{
		"DIGITALOCEAN_TOKEN=" + c.Token(),
		"DOFAKE_API_URL=" + c.APIURL(),
		"DOFAKE_HOST_ADDR=" + c.HostAddr(),
		"DOFAKE_SUBNET=" + c.Subnet().String(),
		"DOFAKE_POOL=" + c.Name(),
	}
	if c.gcsAt != "" {
		env = append(env, "DOFAKE_BUCKET=gs://"+c.cfg.Bucket, "STORAGE_EMULATOR_HOST="+c.gcsAt)
	}
	return env
}

// Close stops the API server (halting every droplet still alive), tears
// the pool down and stops the bucket. The Summary says how many droplets
// were created, deleted and left, and what remained of the pool.
func (c *Cloud) Close() (Summary, error) {
	var sum Summary
	if c.server != nil {
		st := c.server.Stats()
		sum.Created, sum.Deleted, sum.Left = st.Created, st.Deleted, st.Alive
		c.server.Close()
	}
	var errs []error
	if c.booter != nil {
		if err := c.booter.Close(); err != nil {
			errs = append(errs, err)
		}
		sum.Leftovers = netnsboot.Leftovers(context.Background(), c.cfg.Name, c.cfg.WorkDir)
		if len(sum.Leftovers) > 0 {
			errs = append(errs, fmt.Errorf("the pool left behind: %s", strings.Join(sum.Leftovers, "; ")))
		}
	}
	if c.gcs != nil {
		c.gcs.Stop()
	}
	if c.tmp != "" {
		if err := os.RemoveAll(c.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	c.log.Info("test cloud closed", "summary", sum.String())
	return sum, errors.Join(errs...)
}
