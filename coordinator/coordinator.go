package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/coordinator/dispatch"
	"github.com/cloudml/cloudml/coordinator/imagestore"
	"github.com/cloudml/cloudml/coordinator/logbroker"
	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/store"
	"github.com/cloudml/cloudml/internal/grpcopt"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// stopTimeout bounds the graceful stop before a forced one.
const stopTimeout = 5 * time.Second

// Coordinator is the control plane.
type Coordinator struct {
	cfg    Config
	log    hclog.Logger
	store  *store.Store
	images *imagestore.Store
	trust  *authority

	mu    stateLock // protects nodes, byID, jobs, jobOrder, stopping, outbox
	nodes map[string]*nodeEntry
	// byID is nodes sorted by id (addNode), which the scheduler and the
	// swarm walk many times a second.
	byID []*nodeEntry
	// topNode is the highest N of the "node-N" ids in nodes.
	topNode int
	jobs    map[string]*jobEntry
	// jobOrder is jobs oldest first (putJob, dropJob), the order the
	// scheduler serves them in: a pass walks it many times a second, and
	// sorting every job ever kept there cost 1 ms a pass with 5,000 ended
	// jobs kept (BenchmarkSchedulePass).
	jobOrder []*jobEntry
	stopping bool

	q *committer // group commits of what changes under mu (commit.go)
	// disp holds the agents' sessions and sends them commands once durable
	// (dispatch); it has its own lock.
	disp *dispatch.Dispatcher
	// outbox is the commands for agents made under mu (send), handed to
	// disp when mu is released.
	outbox []dispatch.Message
	live   *liveness // heartbeats, apart from mu (liveness.go)
	// pulsePort is the port of the pulse process answering heartbeats
	// (pulse.go); 0 when there is none.
	pulsePort atomic.Int32

	recovering sync.Mutex // held while the store recovers (recover.go)

	kick chan struct{} // coalescing scheduler trigger

	swarm swarmState // protected by mu

	exports *imageExports // image exports asked of nodes; has its own lock

	machines *machines // the provider's machines (machines.go); has its own lock

	tokens *bucketTokens // the bucket tokens lent to nodes (buckettoken.go); has its own lock

	logs *logbroker.Broker // stores and fans out logs (logs.go); has its own lock

	addrMu    sync.Mutex // protects addr, downloads
	addr      string
	downloads *downloadServer // the agent download endpoint (download.go); nil when off

	done chan struct{} // closed when Serve begins stopping
}

// New opens the store and loads the state.
func New(cfg Config) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	trust, err := newAuthority(filepath.Join(cfg.StateDir, PKIDirName), cfg.Logger.Named("trust"))
	if err != nil {
		return nil, err
	}
	images, err := imagestore.New(imagestore.Config{Dir: filepath.Join(cfg.StateDir, "images"), Logger: cfg.Logger.Named("images")})
	if err != nil {
		return nil, err
	}
	st, err := store.OpenWith(cfg.StateDir, store.Options{
		MaxLogBytes: cfg.Limits.AttemptLogBytes,
		LogCapNote:  logCapNote(cfg.Limits.AttemptLogBytes),
		Fault:       cfg.storeFault,
	})
	if err != nil {
		return nil, err
	}
	c := &Coordinator{
		cfg:     cfg,
		log:     cfg.Logger,
		store:   st,
		images:  images,
		exports: newImageExports(),
		tokens:  newBucketTokens(cfg),
		trust:   trust,
		nodes:   map[string]*nodeEntry{},
		jobs:    map[string]*jobEntry{},
		live:    newLiveness(),
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.q = newCommitter(st, cfg.Logger.Named("commit"), c.storeFailed)
	fail := func(err error) (*Coordinator, error) {
		c.q.close()
		st.Close()
		return nil, err
	}
	if c.disp, err = dispatch.New(dispatch.Config{Fence: c.q, Buffer: dispatch.DefaultBuffer, Done: c.done}); err != nil {
		return fail(err)
	}
	c.mu.release = c.flushOutbox
	if c.logs, err = logbroker.New(logbroker.Config{
		Store: st, Jobs: logJobs{c}, CallBytes: cfg.Limits.LogCallBytes, Done: c.done,
	}); err != nil {
		return fail(err)
	}
	if err := c.load(); err != nil {
		return fail(err)
	}
	if c.machines, err = newMachines(c); err != nil {
		return fail(err)
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// CAFingerprint is the SHA-256 of the coordinator's CA certificate, which
// join tokens pin.
func (c *Coordinator) CAFingerprint() string { return c.trust.ca.Fingerprint() }

// CACertPEM is the coordinator's CA certificate.
func (c *Coordinator) CACertPEM() []byte { return c.trust.caPEM() }

// load fills memory from the store. Nodes keep their state, but each gets
// NodeDownAfter from now to reconnect.
func (c *Coordinator) load() error {
	snap, err := c.store.Load()
	if err != nil {
		return err
	}
	if err := c.fromSnapshot(snap); err != nil {
		return err
	}
	c.log.Info("state loaded", "nodes", len(snap.Nodes), "jobs", len(snap.Jobs), "attempts", len(snap.Attempts))
	return nil
}

// fromSnapshot replaces the nodes, jobs and trust records in memory with
// snap's. Callers hold c.mu or own c alone.
func (c *Coordinator) fromSnapshot(snap *store.Snapshot) error {
	now := time.Now()
	c.trust.load(snap)
	c.nodes, c.byID, c.topNode, c.jobs, c.jobOrder = map[string]*nodeEntry{}, nil, 0, map[string]*jobEntry{}, nil
	for _, n := range snap.Nodes {
		c.addNode(&nodeEntry{rec: n}, now)
		c.live.add(n.ID, now)
	}
	for _, j := range snap.Jobs {
		spec := &cloudmlv1.JobSpec{}
		if err := proto.Unmarshal(j.Spec, spec); err != nil {
			return fmt.Errorf("decode spec of job %s: %w", j.ID, err)
		}
		c.jobs[j.ID] = &jobEntry{
			rec:      j,
			spec:     spec,
			tasks:    make([]*store.Task, j.TaskCount),
			attempts: make([][]*store.Attempt, j.TaskCount),
		}
	}
	c.jobOrder = sortedJobs(c.jobs)
	for _, t := range snap.Tasks {
		j := c.jobs[t.JobID]
		if j == nil || t.Index < 0 || int(t.Index) >= len(j.tasks) {
			return fmt.Errorf("task %s/%d has no job", t.JobID, t.Index)
		}
		j.tasks[t.Index] = t
	}
	for _, a := range snap.Attempts {
		j := c.jobs[a.JobID]
		if j == nil || a.Task < 0 || int(a.Task) >= len(j.tasks) || a.Attempt < 1 {
			return fmt.Errorf("attempt %s has no task", refOf(a))
		}
		list := j.attempts[a.Task]
		for len(list) < int(a.Attempt) {
			list = append(list, nil)
		}
		list[a.Attempt-1] = a
		j.attempts[a.Task] = list
	}
	for id, j := range c.jobs {
		if err := fillPendingTasks(j); err != nil {
			return fmt.Errorf("job %s: %w", id, err)
		}
	}
	return nil
}

// Close writes what is queued and closes the store.
func (c *Coordinator) Close() error {
	c.q.close()
	return c.store.Close()
}

// Addr returns the bound address once serving.
func (c *Coordinator) Addr() string {
	c.addrMu.Lock()
	defer c.addrMu.Unlock()
	return c.addr
}

// Run serves and drives the provider. A provider.Preparer first builds
// what must exist before the coordinator listens (netns: its namespaces,
// whose bridge Run listens on too). Once serving, Run starts the provider,
// reconciles its nodes, asks for cfg.Nodes of them, and reconciles every
// ReconcileInterval. It returns when ctx ends (after closing the provider,
// which stops local agents, then the server) or when serving or the
// provider fails.
func (c *Coordinator) Run(ctx context.Context) error {
	p := c.cfg.Provider
	var prepared provider.Prepared
	if prep, ok := p.(provider.Preparer); ok {
		var err error
		if prepared, err = prep.Prepare(ctx); err != nil {
			return errors.Join(fmt.Errorf("%s provider: %w", p.Name(), err), p.Close())
		}
		if len(c.cfg.SwarmPeerCIDRs) == 0 {
			c.cfg.SwarmPeerCIDRs = prepared.PeerCIDRs
		}
	}
	listeners, err := c.listen(prepared.NodeListen)
	if err != nil {
		return errors.Join(err, p.Close())
	}
	dl, err := c.listenDownloads() // download.go; nil when off
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return errors.Join(err, p.Close())
	}
	defer c.closeDownloads(dl)
	addrs := []string{c.cfg.ListenAddr, c.cfg.AdvertiseAddr}
	for _, l := range listeners {
		addrs = append(addrs, l.Addr().String())
	}
	addrs = append(addrs, dl.addrs()...)
	if err := c.prepareTrust(addrs...); err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return errors.Join(err, p.Close())
	}
	c.serveDownloads(dl)
	serveCtx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	provCtx, stopProv := context.WithCancel(ctx)
	defer stopProv()
	serveErr := make(chan error, 1)
	go func() {
		err := c.serve(serveCtx, func() {
			c.log.Info("coordinator serving", "addr", c.Addr(), "provider", p.Name())
		}, listeners...)
		stopProv()
		serveErr <- err
	}()
	t := provider.Target{Addr: dialAddr(c.Addr()), Advertise: c.cfg.AdvertiseAddr, CACertPEM: c.CACertPEM(), MintToken: c.providerToken}
	if len(listeners) > 1 {
		t.Addr = listeners[1].Addr().String()
	}
	if agent, err := c.AgentDownload(); err == nil {
		t.AgentURL, t.AgentSHA256 = agent.URL, agent.SHA256
	}
	var loops sync.WaitGroup
	provErr := c.startProvider(provCtx, t, &loops)
	if provErr != nil && provCtx.Err() != nil && errors.Is(provErr, context.Canceled) {
		provErr = nil // stopped while it started
	}
	if provErr != nil {
		c.log.Error("provider failed", "error", provErr)
		stopProv()
	}
	<-provCtx.Done()
	loops.Wait()
	closeErr := p.Close()
	if closeErr != nil {
		closeErr = fmt.Errorf("close %s provider: %w", p.Name(), closeErr)
	}
	stopServe()
	return errors.Join(provErr, closeErr, <-serveErr)
}

// listen listens on ListenAddr and, when nodeListen is set, on it too (the
// provider's nodes dial that one).
func (c *Coordinator) listen(nodeListen string) ([]net.Listener, error) {
	lis, err := net.Listen("tcp", c.cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", c.cfg.ListenAddr, err)
	}
	listeners := []net.Listener{lis}
	if nodeListen != "" {
		// Agents in netns's namespaces reach the host only through the
		// bridge; clients keep using ListenAddr (loopback by default).
		nodeLis, err := net.Listen("tcp", nodeListen)
		if err != nil {
			lis.Close()
			return nil, fmt.Errorf("listen on %s for the %s provider's nodes: %w", nodeListen, c.cfg.Provider.Name(), err)
		}
		listeners = append(listeners, nodeLis)
	}
	c.addrMu.Lock()
	c.addr = lis.Addr().String()
	c.addrMu.Unlock()
	return listeners, nil
}

// startProvider starts the provider, reconciles its nodes with the
// coordinator's record of machines (machines.go: adopting those of creates
// a dead coordinator left, deleting strays, marking vanished ones lost),
// asks for cfg.Nodes, and starts the machine checks and periodic
// reconciler in loops, which end with ctx.
func (c *Coordinator) startProvider(ctx context.Context, t provider.Target, loops *sync.WaitGroup) error {
	p := c.cfg.Provider
	if err := p.Start(ctx, t); err != nil {
		return fmt.Errorf("%s provider: %w", p.Name(), err)
	}
	if err := c.machines.start(ctx); err != nil {
		return err
	}
	if err := c.machines.ensure(ctx, c.cfg.Nodes); err != nil {
		return fmt.Errorf("%s provider: %w", p.Name(), err)
	}
	loops.Go(func() { c.machines.run(ctx) })
	return nil
}

// dialAddr turns a wildcard listen address into one a local agent can dial.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Serve serves on lis until ctx ends, then stops gracefully (forced after
// 5s). It runs the scheduler and the node checker while serving.
func (c *Coordinator) Serve(ctx context.Context, lis net.Listener) error {
	c.addrMu.Lock()
	c.addr = lis.Addr().String()
	c.addrMu.Unlock()
	if err := c.prepareTrust(c.cfg.AdvertiseAddr, lis.Addr().String()); err != nil {
		return err
	}
	return c.serve(ctx, nil, lis)
}

// prepareTrust issues the server certificate for the addresses served
// (again if they changed) and writes the admin credential file if it is
// missing.
func (c *Coordinator) prepareTrust(addrs ...string) error {
	var hosts []string
	for _, a := range addrs {
		if a != "" {
			hosts = append(hosts, listenHosts(a)...)
		}
	}
	if err := c.trust.ensureServerCert(hosts); err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	addr := c.cfg.AdvertiseAddr
	if addr == "" {
		addr = dialAddr(c.Addr())
	}
	return c.ensureAdminConfig(addr)
}

// providerToken mints the single-use join token of one agent a provider
// starts.
func (c *Coordinator) providerToken(label string, slots int) (string, error) {
	return c.MintToken(label, int32(slots), 0)
}

// serve serves on every listener until ctx ends; serving, if not nil, is
// called once everything is started (the pulse process too).
func (c *Coordinator) serve(ctx context.Context, serving func(), listeners ...net.Listener) error {
	srv := grpc.NewServer(append(grpcopt.Server(),
		grpc.Creds(credentials.NewTLS(c.trust.serverTLS())),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// What it sends is bounded by grpcopt (what agents and clients
		// receive); what it receives by its own request limit.
		grpc.MaxRecvMsgSize(c.cfg.Limits.RequestBytes),
		grpc.ChainUnaryInterceptor(c.unaryAuth),
		grpc.ChainStreamInterceptor(c.streamAuth),
	)...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	cloudmlv1.RegisterAgentServiceServer(srv, &agentServer{c: c})
	cloudmlv1.RegisterJobServiceServer(srv, &jobServer{c: c})
	cloudmlv1.RegisterClusterServiceServer(srv, &clusterServer{c: c})

	stopPulse, perr := c.startPulse()
	if perr != nil {
		for _, lis := range listeners {
			lis.Close()
		}
		return perr
	}
	defer stopPulse()

	var wg sync.WaitGroup
	loopCtx, stopLoops := context.WithCancel(context.Background())
	wg.Add(2)
	go func() { defer wg.Done(); c.runScheduler(loopCtx) }()
	go func() { defer wg.Done(); c.runNodeChecker(loopCtx) }()
	c.poke()

	serveErr := make(chan error, len(listeners))
	for _, lis := range listeners {
		go func() { serveErr <- srv.Serve(lis) }()
	}
	if serving != nil {
		serving()
	}

	var err error
	select {
	case err = <-serveErr:
	case <-ctx.Done():
	}
	hs.Shutdown()
	c.beginStop()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(stopTimeout):
		c.log.Warn("graceful stop timed out; forcing")
		srv.Stop()
		<-stopped
	}
	stopLoops()
	wg.Wait()
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// beginStop ends sessions and log followers so GracefulStop can finish.
func (c *Coordinator) beginStop() {
	c.mu.Lock()
	if !c.stopping {
		c.stopping = true
		close(c.done)
	}
	c.mu.Unlock()
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
