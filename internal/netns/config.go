package netns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
)

// MaxNodes is the largest cluster Create builds.
const MaxNodes = 200

// AutoSubnetBase is the first subnet tried when Config.Subnet is empty; the
// next ones are 10.213.1.0/24, 10.213.2.0/24 and so on, so that clusters of
// parallel test runs never share addresses.
const AutoSubnetBase = "10.213.0.0/24"

// ErrInvalidConfig is wrapped by every Validate error.
var ErrInvalidConfig = errors.New("invalid netns config")

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)

// Config describes a cluster of network namespaces on one bridge.
type Config struct {
	// Name prefixes every namespace, link, directory and iptables rule of
	// the cluster: 1 to 10 characters of [a-z0-9], starting with a letter,
	// so that interface names stay within 15 characters.
	Name string
	// Nodes is how many namespaces (and daemons) to create.
	Nodes int
	// Subnet is an IPv4 prefix of at least 256 addresses (/24 or shorter).
	// The bridge gets .1 on the host and node i gets .(10+i). Empty picks
	// the first /24 from AutoSubnetBase upwards that no host interface or
	// route uses.
	Subnet string
	// WorkDir holds each node's daemon data root and log (WorkDir/<ns>/).
	// Required when Dockerd is set. Daemon sockets and exec roots live under
	// RunDir instead, because unix socket paths are short.
	WorkDir string
	// Logger receives progress and timings; nil discards them.
	Logger hclog.Logger
	// Dockerd starts one dockerd per node; false creates namespaces only.
	Dockerd bool
	// StartTimeout bounds how long a dockerd may take to answer; default 60s.
	StartTimeout time.Duration
	// StopTimeout is how long a dockerd gets between SIGTERM and SIGKILL;
	// default 30s.
	StopTimeout time.Duration
	// PrivateMounts runs each dockerd in a mount namespace of its own
	// (unshare --mount --propagation private) instead of the host's. The
	// daemon's mounts (image layers, network namespaces) then stay inside
	// it, and what is mounted there later (nsenter --target DockerPID
	// --mount) is seen by the daemon and its containers and by nothing
	// outside: a program that joins the namespace shares its daemon's view
	// of the file system, as the programs of a machine share its dockerd's
	// (internal/dofake/netnsboot boots droplets that way). The namespace
	// and its mounts go when its last process exits.
	PrivateMounts bool
}

// DefaultConfig returns a 3-node cluster named "cml" with a dockerd per node
// and an automatically chosen subnet. WorkDir must still be set.
func DefaultConfig() Config {
	return Config{Name: "cml", Nodes: 3, Dockerd: true, StartTimeout: 60 * time.Second, StopTimeout: 30 * time.Second}
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("%w: name %q must be 1-10 characters of [a-z0-9] starting with a letter", ErrInvalidConfig, c.Name)
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return fmt.Errorf("%w: nodes must be 1-%d, got %d", ErrInvalidConfig, MaxNodes, c.Nodes)
	}
	if c.Subnet != "" {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil || !p.Addr().Is4() || p.Bits() > 24 || p.Bits() < 8 {
			return fmt.Errorf("%w: subnet %q must be an IPv4 prefix between /8 and /24", ErrInvalidConfig, c.Subnet)
		}
		c.Subnet = p.Masked().String()
	}
	if c.Dockerd && c.WorkDir == "" {
		return fmt.Errorf("%w: work dir is required with dockerd", ErrInvalidConfig)
	}
	if c.WorkDir != "" {
		abs, err := filepath.Abs(c.WorkDir)
		if err != nil {
			return fmt.Errorf("%w: work dir: %v", ErrInvalidConfig, err)
		}
		c.WorkDir = abs
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 60 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}

// UniqueName returns base followed by this process's id in base 36, a name
// that parallel test processes do not share (base: at most 4 characters).
func UniqueName(base string) string {
	return base + strconv.FormatInt(int64(os.Getpid()), 36)
}

// Names of everything a cluster creates, derived from its prefix. Cleanup
// matches them exactly, so prefix "cml1" never touches "cml10"'s objects.
func bridgeName(prefix string) string      { return prefix + "br" }
func hostVeth(prefix string, i int) string { return prefix + "h" + strconv.Itoa(i) }
func peerVeth(prefix string, i int) string { return prefix + "p" + strconv.Itoa(i) }
func nsName(prefix string, i int) string   { return prefix + "-n" + strconv.Itoa(i) }
func ruleComment(prefix string) string     { return "cloudml-netns:" + prefix }
func runDir(prefix string) string          { return filepath.Join(RunDir, prefix) }
func execRoot(prefix string, i int) string { return filepath.Join(runDir(prefix), "n"+strconv.Itoa(i)) }
func socketPath(prefix string, i int) string {
	return filepath.Join(execRoot(prefix, i), "docker.sock")
}
func netnsPath(name string) string { return filepath.Join(NetnsDir, name) }

// nodeAddr is the address of node i (offset 10+i) in the subnet.
func nodeAddr(subnet netip.Prefix, offset int) netip.Addr {
	a := subnet.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(offset)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// DockerHost is the daemon address of node i of the cluster named name, for
// processes that did not create the cluster (a test driving
// `coordinator serve --provider netns --netns-name NAME`).
func DockerHost(name string, i int) string { return "unix://" + socketPath(name, i) }
