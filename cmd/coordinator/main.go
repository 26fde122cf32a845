// Command coordinator is CloudML's control plane. "coordinator serve" serves
// the gRPC APIs, keeps durable state, and starts nodes through a provider.
// See coordinator/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/digitalocean"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/coordinator/provider/netns"
	"github.com/cloudml/cloudml/coordinator/pulse"
	"github.com/cloudml/cloudml/internal/jobspec"
	"github.com/cloudml/cloudml/internal/logging"
	"github.com/cloudml/cloudml/internal/pki"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usageHead = `coordinator: the CloudML control plane.

Usage:
  coordinator serve [flags]

Serves the agent and client gRPC APIs on --listen, keeps jobs, tasks,
attempts, nodes and logs in --state, and starts nodes with --provider:
`

const usageTail = `
Every connection is TLS 1.3 with client certificates. On first start the
coordinator makes its CA in --state/pki (key 0600) and writes an admin
credential to --admin-config, which cloudml-client finds by itself.

Example (the embedded default: local agents, a file:// bucket):
  coordinator serve --provider local --nodes 2 --state ~/.cloudml/state --bucket file://$HOME/.cloudml/bucket

Flags:
`

// defaultNodes is --nodes's default.
const defaultNodes = 2

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "pulse" {
		// The heartbeat process "coordinator serve --heartbeat-listen"
		// starts beside itself (coordinator/pulse); not for users.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := pulse.Main(ctx, os.Args[2:], os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err) // it starts with "pulse: "
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		f := newFlags(coordinator.DefaultConfig())
		fmt.Fprint(os.Stderr, usage(f.providers()))
		f.fs.PrintDefaults()
		if len(os.Args) >= 2 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
			os.Exit(0)
		}
		os.Exit(2)
	}
	f := newFlags(coordinator.DefaultConfig())
	f.fs.Parse(os.Args[2:])
	f.providerDefaults()
	f.bucketTokenDefaults()
	log := logging.New("coordinator", f.level, f.json)
	f.cfg.Logger = log
	if f.cfg.BucketTokens != nil {
		log.Info("lending agents bucket tokens from this host's Google credentials (--lend-bucket-tokens)")
	}
	f.cfg.Version = version
	f.cfg.Download.AgentBinary = f.local.AgentBinary
	if f.cfg.HeartbeatListen != "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "coordinator: --heartbeat-listen: find this binary to start the pulse process with: %v\n", err)
			os.Exit(2)
		}
		f.cfg.PulseCommand = []string{exe, "pulse"}
	}
	if f.peers != "" {
		f.cfg.SwarmPeerCIDRs = strings.Split(f.peers, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.cpuProfile != "" {
		stopProfile, err := startCPUProfile(f.cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "coordinator: %v\n", err)
			os.Exit(2)
		}
		defer stopProfile()
	}
	if err := serve(ctx, f.cfg, f.providers(), f.provider, f.nodes); err != nil {
		log.Error("coordinator stopped", "error", err)
		fmt.Fprintf(os.Stderr, "coordinator: %v\n", err)
		os.Exit(1)
	}
}

// startCPUProfile writes a CPU profile of this process to path until the
// returned function is called (--cpu-profile; read it with go tool pprof),
// and beside it path.mutex and path.block: where goroutines waited for a
// lock (one contention in 10 sampled) and for channels, locks and selects
// (waits of 100 us and more sampled), to find what keeps a core idle.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(100_000)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		for _, name := range []string{"mutex", "block"} {
			if out, err := os.Create(path + "." + name); err == nil {
				_ = pprof.Lookup(name).WriteTo(out, 0)
				out.Close()
			}
		}
	}, nil
}

// serve builds the provider called name from reg, then runs a coordinator
// with it, asking for nodes at start if the provider starts nodes.
func serve(ctx context.Context, cfg coordinator.Config, reg *provider.Registry, name string, nodes int) error {
	cfg, err := withProvider(cfg, reg, name, nodes)
	if err != nil {
		return err
	}
	p := cfg.Provider
	c, err := coordinator.New(cfg)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	defer c.Close()
	return c.Run(ctx)
}

// withProvider returns cfg with the provider called name from reg, the
// nodes to ask it for at start if it starts nodes, and its check of
// registering machines if it has one.
func withProvider(cfg coordinator.Config, reg *provider.Registry, name string, nodes int) (coordinator.Config, error) {
	p, err := reg.New(name, provider.Env{StateDir: cfg.StateDir, Logger: cfg.Logger})
	if err != nil {
		return cfg, err
	}
	cfg.Provider = p
	if e, _ := reg.Lookup(name); e.StartNodes {
		cfg.Nodes = nodes
	}
	if v, ok := p.(nodeVerifier); ok && cfg.VerifyNode == nil {
		cfg.VerifyNode = v.VerifyNode
	}
	return cfg, nil
}

// usage is the help text, listing reg's providers.
func usage(reg *provider.Registry) string {
	var b strings.Builder
	b.WriteString(usageHead)
	width := 0
	for _, n := range reg.Names() {
		width = max(width, len(n))
	}
	for _, e := range reg.Entries() {
		for i, line := range strings.Split(e.Usage, "\n") {
			name := ""
			if i == 0 {
				name = e.Name
			}
			fmt.Fprintf(&b, "  %-*s  %s\n", width, name, line)
		}
	}
	b.WriteString(usageTail)
	return b.String()
}

// bytesFlag is a byte count flag: "1Gi", "500M" or bytes.
type bytesFlag struct{ p *int64 }

func (b bytesFlag) String() string {
	if b.p == nil {
		return ""
	}
	return jobspec.FormatBytes(*b.p)
}

func (b bytesFlag) Set(s string) error {
	n, err := jobspec.ParseBytes(s)
	if err != nil {
		return err
	}
	if n <= 0 {
		return fmt.Errorf("want a size above 0, got %q", s)
	}
	*b.p = n
	return nil
}

type flags struct {
	fs       *flag.FlagSet
	cfg      coordinator.Config
	level    string
	json     bool
	peers    string
	provider string              // --provider
	nodes    int                 // --nodes
	local    local.Config        // --slots, --agent-bin, --agent-log-level
	netns    netns.Config        // --netns-name, --netns-subnet
	do       digitalocean.Config // --do-*, --cluster-name, --max-hourly-cost
	// doTokenFile is --do-token-file; the token itself comes from the
	// environment.
	doTokenFile string
	// lendTokens is --lend-bucket-tokens (see bucketTokenDefaults).
	lendTokens bool
	// cpuProfile is --cpu-profile.
	cpuProfile string
}

func newFlags(cfg coordinator.Config) *flags {
	f := &flags{fs: flag.NewFlagSet("coordinator serve", flag.ExitOnError), cfg: cfg,
		provider: provider.NoneName, nodes: defaultNodes, local: local.DefaultConfig(), netns: netns.DefaultConfig(),
		do: digitalocean.DefaultConfig()}
	home, _ := os.UserHomeDir()
	if f.cfg.StateDir == "" {
		f.cfg.StateDir = filepath.Join(home, ".cloudml", "state")
	}
	if f.cfg.DefaultBucket == "" {
		f.cfg.DefaultBucket = "file://" + filepath.Join(home, ".cloudml", "bucket")
	}
	fs := f.fs
	fs.StringVar(&f.cfg.ListenAddr, "listen", f.cfg.ListenAddr, "gRPC listen address for agents and clients")
	fs.StringVar(&f.cfg.StateDir, "state", f.cfg.StateDir, "state directory (embedded bbolt database)")
	fs.StringVar(&f.cfg.DefaultBucket, "bucket", f.cfg.DefaultBucket, "default bucket for code and results: gs://bucket[/prefix] or file:///dir")
	fs.StringVar(&f.cfg.AdvertiseAddr, "advertise", "", "address agents and clients dial, host:port, when not --listen (a public name); the server certificate names it")
	fs.StringVar(&f.cfg.AdminConfig, "admin-config", pki.DefaultConfigPath(), "where to write the admin credential when there is none for this coordinator (env "+pki.ConfigEnv+"); empty: nowhere")
	fs.DurationVar(&f.cfg.NodeCertTTL, "node-cert-ttl", f.cfg.NodeCertTTL, "lifetime of node certificates (agents renew at half-life)")
	fs.Func("max-node-slots", fmt.Sprintf("most slots a node may claim when its join token sets no cap (default %d)", f.cfg.MaxNodeSlots), func(v string) error {
		n, err := strconv.ParseInt(v, 10, 32)
		f.cfg.MaxNodeSlots = int32(n)
		return err
	})
	fs.StringVar(&f.provider, "provider", f.provider, "node provider: local, netns, digitalocean or none")
	fs.IntVar(&f.nodes, "nodes", f.nodes, "local and netns providers: number of nodes to start; digitalocean: droplets to create at start (default 0)")
	fs.IntVar(&f.local.Slots, "slots", f.local.Slots, "local and netns providers: task slots per agent (0: the agent's CPU count)")
	fs.StringVar(&f.local.AgentBinary, "agent-bin", f.local.AgentBinary, "path of cloudml-agent, which the local and netns providers start and --download-listen serves (default: beside this binary, then PATH)")
	fs.StringVar(&f.cfg.Download.Listen, "download-listen", "", "HTTPS address serving cloudml-agent (GET /v1/agent/linux-amd64) and the CA (GET /v1/ca.crt) to the machines a cloud provider creates, with the server certificate and no client certificate, e.g. :7444 (default: none; digitalocean: the --listen port plus one)")
	fs.StringVar(&f.netns.Name, "netns-name", f.netns.Name, "netns provider: prefix of the namespaces, bridge and rules (two clusters on one machine need different names)")
	fs.StringVar(&f.netns.Subnet, "netns-subnet", "", "netns provider: bridge subnet, e.g. 10.213.7.0/24 (default: the first free 10.213.X.0/24); the host side is .1")
	fs.StringVar(&f.peers, "swarm-peers", "", "comma-separated CIDRs the agents open the swarm ports to (default: any; netns: the cluster's subnet)")
	fs.DurationVar(&f.cfg.HeartbeatPeriod, "heartbeat", f.cfg.HeartbeatPeriod, "agent heartbeat period")
	fs.StringVar(&f.cfg.HeartbeatListen, "heartbeat-listen", "", "answer heartbeats in a process of their own on this address, e.g. :7445, so they never wait for a busy coordinator (on many nodes); agents dial it at the host they dial for the coordinator (default: heartbeats share --listen)")
	fs.DurationVar(&f.cfg.NodeDownAfter, "node-down-after", 0, "mark a node down, and reschedule its tasks, after this long without a heartbeat or session (default: 3 heartbeat periods)")
	fs.DurationVar(&f.cfg.RegisterDeadline, "register-deadline", f.cfg.RegisterDeadline, "delete a machine the provider made whose agent has not registered within this long, and say why")
	fs.DurationVar(&f.cfg.IdleDelete, "idle-delete", f.cfg.IdleDelete, "delete machines whose node ran no task for this long, down to each pool's minimum (0: never)")
	fs.BoolVar(&f.lendTokens, "lend-bucket-tokens", false, "lend agents short-lived tokens, each limited to one gs:// bucket a job uses, from this host's Google credentials (GOOGLE_APPLICATION_CREDENTIALS or application default credentials), for agents started with --bucket-auth coordinator (default: on with --provider digitalocean, off otherwise)")
	fs.BoolVar(&f.cfg.KeepStrays, "keep-strays", f.cfg.KeepStrays, "only report the provider's machines this coordinator does not know, instead of deleting them")
	fs.Var(bytesFlag{&f.cfg.Limits.AttemptLogBytes}, "max-log-bytes", "logs kept per task attempt (1Gi, 500M, bytes); beyond it the rest is dropped with a note, and stays in the attempt's results")
	fs.Var(bytesFlag{&f.cfg.Limits.ImageBytes}, "max-image-bytes", "largest image archive a client may push or a node upload (16Gi, 500M, bytes)")
	fs.StringVar(&f.level, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&f.local.LogLevel, "agent-log-level", "info", "log level of the agents the provider starts")
	fs.BoolVar(&f.json, "log-json", false, "log as JSON")
	fs.StringVar(&f.cpuProfile, "cpu-profile", "", "write a CPU profile of this run to this file, for go tool pprof (developers; make bench-cp -cp-profile)")
	f.addProviderFlags()
	return f
}
