package simagent

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/cloudml/cloudml/internal/pki"
)

// Config configures a Fleet of simulated agents.
type Config struct {
	// Addr is the coordinator's host:port; required.
	Addr string
	// JoinToken is a join token every node registers with; it must allow
	// Nodes uses (`cloudml-client token create --uses -1`, or
	// client.TokenOptions{Uses: -1}); required.
	JoinToken string
	// Nodes is how many simulated agents run, each on its own connection;
	// default 1.
	Nodes int
	// Slots is each node's task slots; default 4.
	Slots int
	// HostnamePrefix names the nodes <prefix>-<i>; default "sim".
	HostnamePrefix string
	// RegisterParallel is how many nodes register (key, CSR, TLS handshake,
	// Register) at once; default 16.
	RegisterParallel int
	// CallTimeout bounds each unary call; default 30s.
	CallTimeout time.Duration
	// HeartbeatPeriod, when positive, is how often each node heartbeats
	// instead of the period the coordinator gives (a probe wanting more
	// samples than one beat per period); default 0, the coordinator's.
	HeartbeatPeriod time.Duration
	// BackoffMin and BackoffMax bound the wait before a failed call or a
	// broken session is retried; default 50ms and 2s.
	BackoffMin, BackoffMax time.Duration
	// NoLogs skips the log line of each attempt (ReportTask then has
	// last_log_seq 0).
	NoLogs bool
	// SingleReports sends each report in its own ReportTask call, as
	// agents did before ReportTasks, instead of batching a node's reports
	// as the agent does (reportbatch).
	SingleReports bool
	// SeparateLogs ships each attempt's line in a PublishLogs call of its
	// own even when the coordinator takes log batches in reports
	// (SessionStarted.report_logs), as agents did before that.
	SeparateLogs bool
	// ReportStaging reports STAGING before RUNNING, as an agent does whose
	// staging takes its StagingDelay or with a negative one. By default a
	// simulated node, which stages nothing, starts at once and reports
	// RUNNING first, as the agent then does.
	ReportStaging bool
	// DialOptions are added to each connection's options (after the
	// shared transport settings and TLS).
	DialOptions []grpc.DialOption
	// Recorder collects the measurements; New makes one when nil.
	Recorder *Recorder
	// Logger receives warnings (nil: discarded).
	Logger hclog.Logger
}

// DefaultConfig returns a Config with every default filled in except Addr
// and JoinToken.
func DefaultConfig() Config {
	return Config{
		Nodes:            1,
		Slots:            4,
		HostnamePrefix:   "sim",
		RegisterParallel: 16,
		CallTimeout:      30 * time.Second,
		BackoffMin:       50 * time.Millisecond,
		BackoffMax:       2 * time.Second,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is required"))
	}
	if c.JoinToken == "" {
		errs = append(errs, errors.New("join token is required"))
	} else if _, err := pki.ParseToken(c.JoinToken); err != nil {
		errs = append(errs, fmt.Errorf("join token: %w", err))
	}
	if c.Nodes < 1 {
		errs = append(errs, fmt.Errorf("nodes must be at least 1, got %d", c.Nodes))
	}
	if c.Slots < 1 {
		errs = append(errs, fmt.Errorf("slots must be at least 1, got %d", c.Slots))
	}
	if c.RegisterParallel < 1 {
		errs = append(errs, fmt.Errorf("register parallel must be at least 1, got %d", c.RegisterParallel))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, fmt.Errorf("call timeout must be positive, got %s", c.CallTimeout))
	}
	if c.HeartbeatPeriod < 0 {
		errs = append(errs, fmt.Errorf("heartbeat period must not be negative, got %s", c.HeartbeatPeriod))
	}
	if c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("backoff must be positive with max >= min, got %s..%s", c.BackoffMin, c.BackoffMax))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("simagent: config: %w", err)
	}
	return nil
}
