package netnsboot

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/netns"
)

// MaxNodes is the largest pool: node i has its private address at offset
// 10+i of the bridge's subnet and its public one at 110+i.
const MaxNodes = 100

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid netnsboot config")

// overlaid are the directories a droplet gets its own copy of (an overlay
// on the host's): a work dir below one of them would vanish under it.
var overlaid = []string{"/etc", "/usr/local", "/var/lib"}

// Config describes a pool of network-namespace nodes that boot droplets.
type Config struct {
	// Name prefixes the pool's netns cluster (namespaces, bridge, iptables
	// rules): 1 to 10 characters of [a-z0-9] starting with a letter.
	// Default netns.UniqueName("dob"). Two Booters alive at once need
	// different names.
	Name string
	// Nodes is how many nodes the pool has: the most droplets booted at
	// once. Default 3, at most MaxNodes.
	Nodes int
	// Subnet is the bridge's (netns.Config.Subnet: /24 or wider); empty
	// picks a free 10.213.X.0/24.
	Subnet string
	// WorkDir holds the daemons' data roots (WorkDir/docker) and each
	// droplet's own files (WorkDir/droplets/<id>); required. It must not
	// lie below /etc, /usr/local or /var/lib, which every droplet
	// overlays, and must be a file system overlayfs takes as an upper
	// layer (ext4, xfs, tmpfs; not overlayfs).
	WorkDir string
	// StopTimeout is how long a unit's main process gets between SIGTERM
	// and SIGKILL when it is stopped (systemd's TimeoutStopSec); default
	// 10s.
	StopTimeout time.Duration
	// Console receives every droplet's console, one line at a time
	// prefixed "<droplet name> <source>: ": cloud-init's output and its
	// units' stdout and stderr (the journal). nil discards it; the last
	// lines of each are kept for Machine either way.
	Console io.Writer
	// Logger receives the pool's logs; nil discards them.
	Logger hclog.Logger
}

// DefaultConfig returns a pool of 3 nodes named after this process;
// WorkDir must still be set.
func DefaultConfig() Config {
	return Config{Name: netns.UniqueName("dob"), Nodes: 3, StopTimeout: 10 * time.Second}
}

// Validate fills defaults and checks c.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if c.Name == "" {
		c.Name = netns.UniqueName("dob")
	}
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return bad("nodes must be 1-%d, got %d", MaxNodes, c.Nodes)
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.WorkDir == "" {
		return bad("work dir is required")
	}
	abs, err := filepath.Abs(c.WorkDir)
	if err != nil {
		return bad("work dir: %v", err)
	}
	c.WorkDir = abs
	for _, d := range overlaid {
		if abs == d || strings.HasPrefix(abs, d+"/") {
			return bad("work dir %s lies below %s, which every droplet overlays", abs, d)
		}
	}
	cc := c.clusterConfig()
	if err := cc.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// clusterConfig is the pool's netns cluster: a dockerd per node, each in a
// mount namespace of its own that the node's droplet joins.
func (c *Config) clusterConfig() netns.Config {
	cc := netns.DefaultConfig()
	cc.Name, cc.Nodes, cc.Subnet, cc.Logger = c.Name, c.Nodes, c.Subnet, c.Logger
	cc.WorkDir = filepath.Join(c.WorkDir, "docker")
	cc.PrivateMounts = true
	return cc
}
