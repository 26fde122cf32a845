package coordinator

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/oauth2"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/internal/bucket"
)

// Config configures a Coordinator.
type Config struct {
	// storeFault, when set, is the state store's fault hook
	// (store.Options.Fault): tests fail its writes on demand.
	storeFault func(point string) error

	// ListenAddr is the gRPC listen address; default "127.0.0.1:7070".
	ListenAddr string
	// AdvertiseAddr is the address agents and clients dial, host:port, when
	// it is not ListenAddr (a public name, a load balancer). The server
	// certificate names it and ListenAddr; the admin credential points at it.
	AdvertiseAddr string
	// StateDir holds the bbolt file (state.db), the CA and the server
	// certificate (pki/, keys 0600) and the image archives clients and
	// nodes pushed (images/).
	StateDir string
	// DefaultBucket is the output of jobs that name none, such as
	// "file:///root/.cloudml/bucket" or "gs://b/prefix".
	DefaultBucket string
	// AdminConfig is where the coordinator writes an admin credential file
	// when it has none there for its CA (at first start, or after the file
	// was removed): the client finds it by itself. Empty means nowhere.
	AdminConfig string
	// NodeCertTTL is the lifetime of node certificates; agents renew them
	// at half-life. Default 24h.
	NodeCertTTL time.Duration
	// MaxNodeSlots and MaxNodeMemoryBytes cap what a node may claim when
	// its join token sets no cap. Defaults 128 slots and 4 TiB.
	MaxNodeSlots       int32
	MaxNodeMemoryBytes int64
	// StartDeadline is how long an attempt may stay ASSIGNED (sent to a
	// node that never reported it started) before it is taken back and
	// rescheduled; default 5m. Swarm attempts queued in the swarm are
	// exempt: the swarm, not the node, holds them.
	StartDeadline time.Duration
	// EndGrace is how long past its job's timeout a running attempt may go
	// unreported before it is taken back and rescheduled; default 2m.
	// Attempts of jobs without a timeout are not taken back.
	EndGrace time.Duration
	// HeartbeatPeriod is how often agents heartbeat; default 2s.
	HeartbeatPeriod time.Duration
	// NodeDownAfter is how long a node may go without a heartbeat or session
	// before it is DOWN; default 3*HeartbeatPeriod.
	NodeDownAfter time.Duration
	// HeartbeatListen, when set, answers heartbeats in a process of their
	// own listening there (package pulse; --heartbeat-listen), so that a
	// heartbeat never waits for the coordinator's CPU: agents learn its
	// port from SessionStarted and dial it at the host they dial for the
	// coordinator, so it must listen on that host too (":7445": on every
	// address). Empty: heartbeats share the coordinator's port and process.
	HeartbeatListen string
	// PulseCommand starts the pulse process (cmd/coordinator: its own
	// binary with "pulse"); required with HeartbeatListen.
	PulseCommand []string
	// ImageExportStart bounds how long a node asked for an image (ExportImage)
	// may take to start its upload; default 30s.
	ImageExportStart time.Duration
	// ImageExportIdle bounds how long an image upload may go without a byte
	// before the next node is asked; default 30s.
	ImageExportIdle time.Duration
	// Limits bound every input: request, spec, log and image sizes.
	Limits Limits
	// Provider makes and removes the nodes (cmd/coordinator builds it from
	// its registry); nil means provider.None: agents are started
	// elsewhere. Run starts it and closes it; GetClusterInfo reports its
	// name.
	Provider provider.Provider
	// Nodes is how many nodes Run asks the provider for at start, in
	// provider.DefaultPool; nodes it already has there count. 0: none.
	Nodes int
	// ReconcileInterval is how often Run reconciles the provider's nodes
	// with the ones it asked for (it also does at start); default 1m.
	ReconcileInterval time.Duration
	// KeepStrays makes the reconciler only report the provider's nodes
	// that the coordinator did not ask for, instead of deleting them.
	KeepStrays bool
	// RegisterDeadline is how long a machine the provider made may go
	// without its agent registering before it is deleted (and the reason
	// logged and listed); default 10m.
	RegisterDeadline time.Duration
	// IdleDelete deletes a machine whose node ran no task for this long,
	// down to its pool's minimum, in pools that set no idle time of their
	// own ('cluster up --idle-delete'); 0 means never.
	IdleDelete time.Duration
	// MachineCheckInterval is how often the machines are checked against
	// the registration deadline and idle time, and deletes retried;
	// default 5s.
	MachineCheckInterval time.Duration
	// SwarmPeerCIDRs are the cluster's addresses: agents open the swarm
	// ports to these only (empty: to any address, or those the provider
	// gives: netns's subnet).
	SwarmPeerCIDRs []string
	// Download serves the agent binary over HTTPS to the machines a cloud
	// provider creates (download.go); off unless Download.Listen is set.
	Download DownloadConfig
	// VerifyNode, when set, checks every registering machine (its
	// provider id, the address it connects from, its token) before it gets
	// a node certificate: an error refuses it with UNAUTHENTICATED and the
	// error's message, creates no node and leaves the token unused (one
	// wrapping ErrVerifyUnavailable answers UNAVAILABLE, which the agent
	// retries). nil accepts every machine whose token is valid. See
	// verify.go.
	VerifyNode VerifyNodeFunc
	// BucketTokens is the Google credential whose tokens the coordinator
	// lends its nodes, one gs:// bucket at a time (the BucketToken RPC,
	// buckettoken.go), so agents on machines with none of their own stage
	// and upload; nil means it lends none and the RPC says how to give it
	// one. A source whose error wraps ErrNoGoogleCredentials makes the RPC
	// answer FAILED_PRECONDITION with that error's advice.
	BucketTokens oauth2.TokenSource
	// BucketTokensUnscoped lends BucketTokens' own tokens instead of
	// narrowing each to the one bucket it is for (a Credential Access
	// Boundary exchanged at Google's STS). Only for sources already limited
	// to the jobs' buckets, and tests.
	BucketTokensUnscoped bool
	// STSClient makes the downscoping exchanges with Google's STS
	// (sts.googleapis.com); nil means a client with a 30s timeout. Tests
	// point it at a fake.
	STSClient *http.Client
	// Logger is the root logger; nil means no logging.
	Logger hclog.Logger
	// Version is reported by GetClusterInfo.
	Version string
}

// DefaultConfig returns the defaults; StateDir and DefaultBucket are left
// for the caller.
func DefaultConfig() Config {
	return Config{
		ListenAddr:           "127.0.0.1:7070",
		HeartbeatPeriod:      2 * time.Second,
		NodeDownAfter:        6 * time.Second,
		ImageExportStart:     30 * time.Second,
		ImageExportIdle:      30 * time.Second,
		NodeCertTTL:          24 * time.Hour,
		MaxNodeSlots:         128,
		MaxNodeMemoryBytes:   4 << 40,
		StartDeadline:        5 * time.Minute,
		EndGrace:             2 * time.Minute,
		Limits:               DefaultLimits(),
		Provider:             provider.None{},
		ReconcileInterval:    time.Minute,
		RegisterDeadline:     10 * time.Minute,
		MachineCheckInterval: 5 * time.Second,
	}
}

// Validate fills zero durations and limits with their defaults and checks
// the rest.
func (c *Config) Validate() error {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:7070"
	}
	if c.StateDir == "" {
		return errors.New("config: state dir is required")
	}
	if c.DefaultBucket != "" {
		if _, err := bucket.Parse(c.DefaultBucket); err != nil {
			return fmt.Errorf("config: default bucket: %w", err)
		}
	}
	if c.HeartbeatPeriod <= 0 {
		c.HeartbeatPeriod = 2 * time.Second
	}
	if c.NodeDownAfter <= 0 {
		c.NodeDownAfter = 3 * c.HeartbeatPeriod
	}
	if c.NodeDownAfter < c.HeartbeatPeriod {
		return fmt.Errorf("config: node down after (%s) is shorter than the heartbeat period (%s)", c.NodeDownAfter, c.HeartbeatPeriod)
	}
	if c.HeartbeatListen != "" && len(c.PulseCommand) == 0 {
		return errors.New("config: heartbeat listen address set but no command to start the pulse process with")
	}
	if c.ImageExportStart <= 0 {
		c.ImageExportStart = 30 * time.Second
	}
	if c.ImageExportIdle <= 0 {
		c.ImageExportIdle = 30 * time.Second
	}
	if c.NodeCertTTL <= 0 {
		c.NodeCertTTL = 24 * time.Hour
	}
	if c.NodeCertTTL < 2*time.Minute {
		return fmt.Errorf("config: node certificate lifetime %s is under 2m: agents could not renew in time", c.NodeCertTTL)
	}
	if c.MaxNodeSlots <= 0 {
		c.MaxNodeSlots = 128
	}
	if c.MaxNodeMemoryBytes <= 0 {
		c.MaxNodeMemoryBytes = 4 << 40
	}
	if c.StartDeadline <= 0 {
		c.StartDeadline = 5 * time.Minute
	}
	if c.EndGrace <= 0 {
		c.EndGrace = 2 * time.Minute
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.Provider == nil {
		c.Provider = provider.None{}
	}
	if c.Nodes < 0 {
		return fmt.Errorf("config: nodes must not be negative, got %d", c.Nodes)
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = time.Minute
	}
	if c.RegisterDeadline <= 0 {
		c.RegisterDeadline = 10 * time.Minute
	}
	if c.MachineCheckInterval <= 0 {
		c.MachineCheckInterval = 5 * time.Second
	}
	if c.IdleDelete < 0 {
		return fmt.Errorf("config: idle delete must not be negative, got %s", c.IdleDelete)
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return nil
}
