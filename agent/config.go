package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/agent/runtime"
	"github.com/cloudml/cloudml/agent/swarm"
	"github.com/cloudml/cloudml/internal/bucket"
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("invalid agent config")

// Config configures an Agent. Zero values take the defaults of
// DefaultConfig, so a Config built field by field works too.
type Config struct {
	// CoordinatorAddr is host:port of the coordinator's gRPC listener.
	CoordinatorAddr string
	// JoinToken registers the node when it has no certificate yet (from a
	// file or the environment, never argv); unused once it has one.
	JoinToken string
	// WorkDir holds the secrets directory (SecretsDir: the node's key and
	// certificate, 0700), cache/ and attempts/. The agent makes it 0711 so
	// that tasks running as another user can reach their files beneath it.
	WorkDir string
	// Slots is how many tasks the node runs at once; default runtime.NumCPU().
	Slots int
	// Hostname is reported at registration; default os.Hostname(), or the
	// droplet's name when MetadataURL is set.
	Hostname string
	// Address is the address the node advertises; default "127.0.0.1", or
	// the droplet's private (else public) IPv4 address when MetadataURL is
	// set.
	Address string
	// MetadataURL is the base URL of the DigitalOcean droplet metadata
	// service (dropletmeta.DefaultURL on a droplet); empty means no lookup.
	// When set, the agent reads its droplet id there before it registers
	// and reports it (RegisterRequest.provider_id) for the coordinator to
	// check, and takes Hostname and Address from there unless they are set.
	MetadataURL string
	// Logger is the root logger; nil discards logs.
	Logger hclog.Logger
	// DialOptions are added when dialing (tests add a bufconn dialer). The
	// transport is always TLS (see identity.go).
	DialOptions []grpc.DialOption
	// BackoffMin and BackoffMax bound the reconnect and retry backoff
	// (exponential, capped, full jitter); defaults 200ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// LogBatchBytes closes a log batch at this size; default 512 KiB.
	LogBatchBytes int
	// LogFlushInterval closes a log batch after this long; default 100ms.
	LogFlushInterval time.Duration
	// StagingDelay is how long an attempt stages before it reports
	// STAGING; one that starts (or ends) sooner reports that instead, one
	// report fewer for the coordinator, as Nomad's client sends only an
	// allocation's latest state. Default 50ms; negative reports STAGING
	// at once.
	StagingDelay time.Duration
	// Runtime runs tasks; nil means the process runtime, which keeps tasks
	// away from the secrets directory (see runtime.ProcessConfig).
	Runtime runtime.Runtime
	// TaskUser is the account process tasks run as: a name, a uid or
	// uid:gid. Empty means "nobody" when the agent runs as root, and the
	// agent's own user (confined by Landlock) otherwise. Tasks never run
	// as root.
	TaskUser string
	// CallTimeout bounds every unary call; default 10s.
	CallTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL when a task is
	// stopped; default 5s.
	KillGrace time.Duration
	// Env is the agent's environment; nil means os.Environ(). Tasks inherit
	// only the variables runtime.HostEnv lets through (PATH, LANG, LC_*,
	// TZ...), never the rest (CLOUDML_TOKEN, credentials).
	Env []string
	// OpenBucket opens buckets for staging and results; nil means
	// bucket.Open (tests pass an in-memory bucket), with BucketAuth.
	OpenBucket bucket.OpenFunc
	// BucketAuth is how gs:// buckets are authenticated:
	// BucketAuthDefault ("default", the default) uses the machine's
	// Application Default Credentials; BucketAuthCoordinator
	// ("coordinator") uses short-lived tokens the coordinator lends over
	// the node's connection, for machines with no credential (droplets).
	BucketAuth string
	// Docker is the address of the node's Docker daemon
	// ("unix:///var/run/docker.sock"); empty means the node has no Docker
	// and runs no container tasks.
	Docker string
	// SwarmRoot holds one link per swarm node, <SwarmRoot>/<swarm node id>
	// → WorkDir, so a swarm service can name a node's cache with the
	// {{.Node.ID}} template; default /var/lib/cloudml/swarm.
	SwarmRoot string
	// ServiceWatch bounds how long the swarm manager watches a new service
	// for a placement failure (image missing, mount refused); default 10m.
	ServiceWatch time.Duration
	// Firewall is the node's firewall, opened for the swarm ports before a
	// swarm init or join when it is active; nil means ufw.
	Firewall swarm.Firewall
}

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	return Config{
		Slots:            goruntime.NumCPU(),
		Hostname:         host,
		Address:          "127.0.0.1",
		BackoffMin:       200 * time.Millisecond,
		BackoffMax:       10 * time.Second,
		LogBatchBytes:    512 << 10,
		LogFlushInterval: 100 * time.Millisecond,
		StagingDelay:     50 * time.Millisecond,
		CallTimeout:      10 * time.Second,
		KillGrace:        5 * time.Second,
		SwarmRoot:        "/var/lib/cloudml/swarm",
		ServiceWatch:     10 * time.Minute,
	}
}

// withDefaults fills every zero field from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Slots == 0 {
		c.Slots = d.Slots
	}
	// With MetadataURL they come from the droplet at registration
	// (droplet.go).
	if c.Hostname == "" && c.MetadataURL == "" {
		c.Hostname = d.Hostname
	}
	if c.Address == "" && c.MetadataURL == "" {
		c.Address = d.Address
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.LogBatchBytes == 0 {
		c.LogBatchBytes = d.LogBatchBytes
	}
	if c.LogFlushInterval == 0 {
		c.LogFlushInterval = d.LogFlushInterval
	}
	if c.StagingDelay == 0 {
		c.StagingDelay = d.StagingDelay
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.KillGrace == 0 {
		c.KillGrace = d.KillGrace
	}
	if c.SwarmRoot == "" {
		c.SwarmRoot = d.SwarmRoot
	}
	if c.ServiceWatch == 0 {
		c.ServiceWatch = d.ServiceWatch
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Firewall == nil {
		c.Firewall = &swarm.UFW{}
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.BucketAuth == "" {
		c.BucketAuth = BucketAuthDefault
	}
	return c
}

// taskUser resolves TaskUser: nil means the agent's own user.
func (c *Config) taskUser() (*runtime.User, error) {
	spec := c.TaskUser
	if spec == "" {
		if os.Geteuid() != 0 {
			return nil, nil
		}
		spec = "nobody"
	}
	u, err := runtime.LookupUser(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w (set --task-user)", ErrConfig, err)
	}
	if u.UID == uint32(os.Geteuid()) {
		return nil, nil
	}
	return &u, nil
}

// realPath is p made absolute with every symlink of its existing part
// resolved, so that the work dir's path is the one the kernel walks.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for dir := abs; ; dir = filepath.Dir(dir) {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if dir == filepath.Dir(dir) {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.CoordinatorAddr == "":
		return bad("no coordinator address (set --coordinator host:port)")
	case c.WorkDir == "":
		return bad("no work directory (set --work-dir)")
	case c.Slots < 0:
		return bad("slots must be positive, got %d", c.Slots)
	case c.BackoffMin < 0 || c.BackoffMax < c.BackoffMin:
		return bad("backoff bounds %v..%v are not increasing", c.BackoffMin, c.BackoffMax)
	case c.LogBatchBytes < 0 || c.LogBatchBytes > 2<<20:
		return bad("log batch size %d is not within 1 B..2 MiB", c.LogBatchBytes)
	case c.MetadataURL != "" && !isHTTPURL(c.MetadataURL):
		return bad("metadata URL %q is not an http:// or https:// URL", c.MetadataURL)
	case c.BucketAuth != "" && c.BucketAuth != BucketAuthDefault && c.BucketAuth != BucketAuthCoordinator:
		return bad("bucket auth %q is neither %q nor %q", c.BucketAuth, BucketAuthDefault, BucketAuthCoordinator)
	case c.SwarmRoot != "" && !filepath.IsAbs(c.SwarmRoot):
		return bad("swarm root %q is not an absolute path", c.SwarmRoot)
	case c.LogFlushInterval < 0 || c.CallTimeout < 0 || c.KillGrace < 0 || c.ServiceWatch < 0:
		return bad("durations must not be negative")
	}
	return nil
}
