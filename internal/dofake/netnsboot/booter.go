package netnsboot

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/dofake"
	"github.com/cloudml/cloudml/internal/netns"
)

var (
	// ErrNoFreeNode: every node of the pool runs a droplet.
	ErrNoFreeNode = errors.New("no free node in the pool")
	// ErrClosed: the pool was closed.
	ErrClosed = errors.New("netnsboot pool closed")
)

// publicOffset is where the nodes' public addresses start in the subnet.
const publicOffset = 110

// Booter is a dofake.Booter whose droplets are the nodes of a pool of
// network namespaces, each with its own dockerd.
type Booter struct {
	cfg     Config
	log     hclog.Logger
	console console
	cluster *netns.Cluster
	nodes   []netns.Node
	netIno  []uint64 // by node: its network namespace's inode

	mu       sync.Mutex    // protects busy, ready, prepared, machines, closed, metaRule, stats, unitEnv, halting, freed
	busy     []int         // by node: the droplet it runs, 0 when free, -1 while ScriptSwarm uses it
	ready    []*machine    // by node: a free node's machine set up ahead (prepare), nil when none
	prepared int           // preparations made, which name their directories
	unitEnv  []string      // SetDefaultEnvironment's
	halting  int           // halts under way, each of which may free a node
	freed    chan struct{} // closed (and replaced) when a node is freed or a halt ends
	machines map[int]*machine
	closed   bool
	metaRule []string // the nat rule of RouteMetadata, nil before
	stats    Stats
	booting  sync.WaitGroup // Boot calls under way, which Close waits for
}

var _ dofake.Booter = (*Booter)(nil)

// Stats are counts for tests.
type Stats struct {
	// Booted counts boots that returned addresses, Halted the halts that
	// released their node, BootFailures the boots that failed.
	Booted, Halted, BootFailures int
	// Running is how many droplets are booted now; Free how many nodes
	// wait for one.
	Running, Free int
	// Strays counts the processes halts found left in a node after its
	// droplet's units stopped, and killed.
	Strays int
}

// New builds the pool: the netns cluster (a dockerd per node, each in a
// mount namespace of its own), each node's route to the metadata address.
// It fails with netns.Check's error on a machine that cannot host it.
func New(ctx context.Context, cfg Config) (*Booter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := netns.Check(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dockerSock); err != nil {
		return nil, fmt.Errorf("a droplet's Docker socket is bound on %s, which must exist (start the host's dockerd): %w", dockerSock, err)
	}
	start := time.Now()
	log := cfg.Logger.Named("netnsboot").With("pool", cfg.Name)
	removeStaleRules(ctx, cfg.Name)
	cluster, err := netns.Create(ctx, cfg.clusterConfig())
	if err != nil {
		return nil, fmt.Errorf("build the pool: %w", err)
	}
	b := &Booter{
		cfg: cfg, log: log, console: console{w: cfg.Console}, cluster: cluster, nodes: cluster.Nodes(),
		busy: make([]int, cfg.Nodes), ready: make([]*machine, cfg.Nodes), machines: map[int]*machine{}, freed: make(chan struct{}),
	}
	for _, n := range b.nodes {
		b.netIno = append(b.netIno, netns.Inode(n.NetnsPath))
	}
	if err := b.routeMetadataAddr(ctx); err != nil {
		return nil, errors.Join(err, cluster.Close())
	}
	var wg sync.WaitGroup
	for node := range b.nodes {
		wg.Go(func() { b.prepare(ctx, node) })
	}
	wg.Wait()
	log.Info("pool ready", "nodes", cfg.Nodes, "subnet", cluster.Subnet(), "elapsed", timeSince(start))
	return b, nil
}

// Cluster returns the pool's netns cluster (to import images into every
// node's daemon, or reach one).
func (b *Booter) Cluster() *netns.Cluster { return b.cluster }

// HostAddr is the bridge's address on the host: the only host address
// the droplets reach. Serve what they need there (the coordinator, its
// agent download, dofake's metadata listener).
func (b *Booter) HostAddr() string { return b.cluster.HostAddr() }

// addrAt returns the subnet's address at offset.
func (b *Booter) addrAt(offset int) netip.Addr {
	a := b.cluster.Subnet().Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + uint32(offset)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Boot makes a free node droplet d's machine and starts its first boot:
// it binds the droplet's own directories, Docker socket, hostname and
// public address in the node, and returns the node's addresses; cloud-init
// then runs d's user-data on its own (see the package documentation).
// When no node is free but a deleted droplet's halt is under way, it
// waits for that node, as a cloud does not refuse a droplet because
// another is being torn down; ErrNoFreeNode when every node runs a
// droplet.
func (b *Booter) Boot(ctx context.Context, d dofake.Droplet, userData string) (dofake.Addresses, error) {
	b.mu.Lock()
	node := -1
	for {
		if b.closed {
			b.mu.Unlock()
			return dofake.Addresses{}, ErrClosed
		}
		if b.machines[d.ID] != nil {
			b.mu.Unlock()
			return dofake.Addresses{}, fmt.Errorf("droplet %d is booted already", d.ID)
		}
		if node = slices.Index(b.busy, 0); node >= 0 {
			break
		}
		if b.halting == 0 {
			b.stats.BootFailures++
			b.mu.Unlock()
			return dofake.Addresses{}, fmt.Errorf("droplet %d: %w (%d nodes)", d.ID, ErrNoFreeNode, len(b.nodes))
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return dofake.Addresses{}, fmt.Errorf("droplet %d: waiting for a node being halted: %w", d.ID, ctx.Err())
		}
		b.mu.Lock()
	}
	b.busy[node] = d.ID
	ready := b.ready[node]
	b.ready[node] = nil
	b.booting.Add(1)
	b.mu.Unlock()
	defer b.booting.Done()

	var m *machine
	var err error
	if ready != nil {
		m, err = b.attach(ctx, ready, d)
	} else {
		m, err = b.boot(ctx, d, node)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.busy[node] = 0
		b.stats.BootFailures++
		return dofake.Addresses{}, fmt.Errorf("boot droplet %d on node %d: %w", d.ID, node, err)
	}
	b.machines[d.ID] = m
	b.stats.Booted++
	go m.cloudInit(userData)
	return dofake.Addresses{Public: m.public.Addr(), Private: m.private}, nil
}

// boot sets node up for droplet d; on error it leaves the node as it was.
func (b *Booter) boot(ctx context.Context, d dofake.Droplet, node int) (*machine, error) {
	images, err := b.imageIDs(ctx, node)
	if err != nil {
		return nil, err
	}
	m, err := b.newMachine(node, strconv.Itoa(d.ID), d.Name, filepath.Join(b.cfg.WorkDir, "droplets", strconv.Itoa(d.ID)))
	if err != nil {
		return nil, err
	}
	m.named(d)
	m.images = images
	if err := m.setup(ctx); err != nil {
		return nil, errors.Join(err, m.discard())
	}
	m.log.Info("droplet booted", "private", m.private, "public", m.public.Addr(), "elapsed", timeSince(m.booted))
	return m, nil
}

// discard undoes what setup made of a machine whose cloud-init never
// ran (a failed boot, an unused preparation).
func (m *machine) discard() error {
	m.cancel()
	close(m.ciDone)
	return m.teardown(context.Background())
}

// newMachine is node's machine, not set up yet: key names its overlays,
// name is its hostname, dir holds its files.
func (b *Booter) newMachine(node int, key, name, dir string) (*machine, error) {
	pid, err := b.cluster.DockerPID(node)
	if err != nil {
		return nil, err
	}
	mctx, cancel := context.WithCancel(context.Background())
	n := b.nodes[node]
	return &machine{
		b: b, log: b.log.Named("droplet").With("node", node),
		name: name, key: key, node: node, daemon: pid, dockerHost: n.DockerHost, dir: dir,
		private: netip.MustParseAddr(n.Addr),
		public:  netip.PrefixFrom(b.addrAt(publicOffset+node), b.cluster.Subnet().Bits()),
		ctx:     mctx, cancel: cancel, ciDone: make(chan struct{}),
		booted: time.Now(),
		units:  map[string]*service{}, enabled: map[string]bool{}, ciState: "pending",
	}, nil
}

// named makes m droplet d's machine.
func (m *machine) named(d dofake.Droplet) {
	m.id, m.name = d.ID, d.Name
	m.log = m.b.log.Named("droplet").With("droplet", d.ID, "name", d.Name, "node", m.node)
	m.ciOut = newLineWriter(&m.b.console, d.Name+" cloud-init: ")
	m.booted = time.Now()
}

// prepare sets free node up ahead of its next droplet (its directories,
// overlays, Docker socket, public address and systemctl stand-in; all
// but the hostname), so that a droplet's boot only names it (attach):
// the 10 or so mount and ip commands of a setup took 120 ms on 2 busy
// cores, a cost no cloud's droplet pays once its machine is up, and none
// the bench's script pays on its nodes. A failure is logged; the node's
// next droplet is then set up at its boot.
func (b *Booter) prepare(ctx context.Context, node int) {
	b.mu.Lock()
	b.prepared++
	key := fmt.Sprintf("prep-%d-%d", node, b.prepared)
	b.mu.Unlock()
	m, err := b.newMachine(node, key, b.nodes[node].Name, filepath.Join(b.cfg.WorkDir, "droplets", key))
	if err == nil {
		if err = m.setup(ctx); err != nil {
			err = errors.Join(err, m.discard())
		}
	}
	if err != nil {
		b.log.Warn("could not prepare a node ahead; its next droplet is set up as it boots", "node", node, "error", err)
		return
	}
	b.mu.Lock()
	b.ready[node] = m
	b.mu.Unlock()
}

// attach makes the prepared machine m droplet d's: its hostname, the
// node's images to keep, and its directory under the droplet's id (a
// link). On error it tears m down.
func (b *Booter) attach(ctx context.Context, m *machine, d dofake.Droplet) (*machine, error) {
	m.named(d)
	images, err := b.imageIDs(ctx, m.node)
	if err == nil {
		m.images = images
		err = os.Symlink(filepath.Base(m.dir), filepath.Join(b.cfg.WorkDir, "droplets", strconv.Itoa(d.ID)))
	}
	if err == nil {
		_, err = m.sh(ctx, `echo "$1" > /proc/sys/kernel/hostname`, "hostname", d.Name)
	}
	if err != nil {
		return nil, errors.Join(err, m.discard())
	}
	m.log.Info("droplet booted", "private", m.private, "public", m.public.Addr(), "prepared", true, "elapsed", timeSince(m.booted))
	return m, nil
}

// Halt stops droplet d's machine and frees its node for a later droplet:
// cloud-init and the units are stopped (SIGTERM, SIGKILL after
// Config.StopTimeout), every other process left in the node is killed,
// the node's dockerd leaves its swarm and loses the containers, volumes,
// networks and images the droplet made, and the droplet's mounts, address
// and files go. A droplet it does not run (its boot failed) is halted
// already.
func (b *Booter) Halt(ctx context.Context, d dofake.Droplet) error {
	b.mu.Lock()
	m := b.machines[d.ID]
	b.mu.Unlock()
	if m == nil {
		return nil
	}
	return b.halt(ctx, m)
}

func (b *Booter) halt(ctx context.Context, m *machine) error {
	m.haltOnce.Do(func() { m.haltErr = b.doHalt(ctx, m) })
	return m.haltErr
}

// doHalt is halt's one run for m.
func (b *Booter) doHalt(ctx context.Context, m *machine) error {
	start := time.Now()
	b.mu.Lock()
	b.halting++
	b.mu.Unlock()
	m.cancel()
	<-m.ciDone
	m.mu.Lock()
	units := make([]*service, 0, len(m.units))
	for _, s := range m.units {
		units = append(units, s)
	}
	m.mu.Unlock()
	for _, s := range units {
		s.stop()
	}
	var errs []error
	left := strays(b.netIno[m.node], m.daemon, filepath.Dir(strings.TrimPrefix(m.dockerHost, "unix://")))
	var pids []int
	for _, p := range left {
		m.log.Warn("killing a process left in the droplet", "pid", p.PID, "cmdline", p.Cmdline)
		pids = append(pids, p.PID)
	}
	if alive := killAll(pids, 10*time.Second); len(alive) > 0 {
		errs = append(errs, fmt.Errorf("processes of droplet %d survive SIGKILL: %v", m.id, alive))
	}
	if err := b.resetDocker(ctx, m.node, m.images); err != nil {
		errs = append(errs, err)
	}
	if err := m.teardown(ctx); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	if err == nil && !b.isClosed() {
		b.prepare(ctx, m.node) // before the node is free: a droplet booting there finds it ready
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.machines, m.id)
	b.stats.Strays += len(left)
	b.halting--
	b.signalFreed()
	if err != nil {
		// The node stays busy: a later droplet must not boot on what is
		// left of this one.
		m.log.Error("droplet halt failed; its node is not reused", "error", err)
		return err
	}
	b.busy[m.node] = 0
	b.stats.Halted++
	m.log.Info("droplet halted", "elapsed", timeSince(start))
	return nil
}

// isClosed says whether Close began.
func (b *Booter) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// signalFreed wakes the boots waiting for a node; b.mu must be held.
func (b *Booter) signalFreed() {
	close(b.freed)
	b.freed = make(chan struct{})
}

// SetDefaultEnvironment sets what systemd's DefaultEnvironment= (in
// /etc/systemd/system.conf) would hold on the droplets' image: variables
// ("NAME=value") every unit started from now on gets besides PATH and
// LANG. An image made for a cluster sets there what its agents need (for
// example GOOGLE_APPLICATION_CREDENTIALS); tests point the agents at a
// fake-gcs-server on HostAddr with STORAGE_EMULATOR_HOST. It is a method,
// not a Config field, because such values name HostAddr, known once the
// pool is built.
func (b *Booter) SetDefaultEnvironment(env []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unitEnv = slices.Clone(env)
}

// defaultEnvironment returns SetDefaultEnvironment's variables.
func (b *Booter) defaultEnvironment() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.unitEnv)
}

// Stats returns the counts.
func (b *Booter) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.stats
	st.Running = len(b.machines)
	for _, id := range b.busy {
		if id == 0 {
			st.Free++
		}
	}
	return st
}

// Close halts every droplet still booted, removes the metadata rule and
// tears the pool's cluster down (netns.Cluster.Close: nothing is left).
// dofake's Server.Close halts its droplets too: close the server first.
func (b *Booter) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.booting.Wait()
	b.mu.Lock()
	var ms []*machine
	for _, m := range b.machines {
		ms = append(ms, m)
	}
	rule := b.metaRule
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = b.halt(ctx, m) })
	}
	wg.Wait()
	b.mu.Lock()
	ready := slices.Clone(b.ready)
	clear(b.ready)
	b.mu.Unlock()
	for _, m := range ready {
		if m != nil {
			errs = append(errs, m.discard())
		}
	}
	if rule != nil {
		if out, err := iptables(ctx, append([]string{"-t", "nat", "-D"}, rule...)...); err != nil {
			errs = append(errs, fmt.Errorf("remove the metadata rule: %w: %s", err, out))
		}
	}
	errs = append(errs, b.cluster.Close())
	if err := os.RemoveAll(filepath.Join(b.cfg.WorkDir, "droplets")); err != nil {
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	b.log.Info("pool closed", "error", err)
	return err
}

// Leftovers describes whatever of the pool named name still exists on
// this machine (netns.Leftovers of its cluster, its nat rule); empty
// after Close.
func Leftovers(ctx context.Context, name, workDir string) []string {
	out := netns.Leftovers(ctx, name, workDir)
	for _, r := range metadataRules(ctx, name) {
		out = append(out, "iptables -t nat "+r)
	}
	return out
}

func timeSince(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
