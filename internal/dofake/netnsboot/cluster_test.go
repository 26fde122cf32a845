package netnsboot_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	cml "github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/cloudinit"
	"github.com/cloudml/cloudml/internal/jobspec"
	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// buildAgent builds cloudml-agent into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := t.TempDir()
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/cloudml-agent")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cloudml-agent: %v\n%s", err, out)
	}
	t.Logf("cloudml-agent built in %s", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "cloudml-agent")
}

// claims records what registering machines said about themselves.
type claims struct {
	mu sync.Mutex
	by map[string]coordinator.NodeClaim // by provider id
}

func (c *claims) get() map[string]coordinator.NodeClaim {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]coordinator.NodeClaim{}
	for k, v := range c.by {
		out[k] = v
	}
	return out
}

// TestDropletsFormASwarm is the DigitalOcean path end to end with no
// account: a real coordinator serving its agent download on the pool's
// bridge, two droplets created through godo with the user-data
// coordinator/cloudinit renders, each booted on a namespace node, whose
// agents download, register with their droplet ids and form a swarm that
// runs a container job across both; deleting the droplets leaves
// nothing. It prints the time from create to every node in the swarm,
// and, on the same nodes, that of a script running docker swarm init and
// join directly.
func TestDropletsFormASwarm(t *testing.T) {
	p := startPool(t, 2)
	agentBin := buildAgent(t)
	ctx := context.Background()
	if _, err := p.b.Cluster().ImportBusybox(ctx); err != nil {
		t.Fatal(err)
	}

	// The coordinator, reachable from the nodes on the bridge address.
	state := t.TempDir()
	seen := &claims{by: map[string]coordinator.NodeClaim{}}
	ccfg := coordinator.DefaultConfig()
	ccfg.ListenAddr = net.JoinHostPort(p.b.HostAddr(), "0")
	ccfg.StateDir = state
	ccfg.DefaultBucket = "file://" + t.TempDir()
	ccfg.AdminConfig = filepath.Join(state, "admin.config")
	ccfg.Download = coordinator.DownloadConfig{Listen: net.JoinHostPort(p.b.HostAddr(), "0"), AgentBinary: agentBin}
	ccfg.SwarmPeerCIDRs = []string{p.b.Cluster().Subnet().String()}
	ccfg.HeartbeatPeriod, ccfg.NodeDownAfter = 500*time.Millisecond, 10*time.Second
	ccfg.Logger = testutil.Logger(t).Named("coordinator")
	ccfg.VerifyNode = func(ctx context.Context, c coordinator.NodeClaim) error {
		id, err := strconv.Atoi(c.ProviderID)
		if err != nil {
			return fmt.Errorf("provider id %q is not a droplet id", c.ProviderID)
		}
		d, _, err := p.c.Droplets.Get(ctx, id)
		if err != nil {
			return fmt.Errorf("droplet %d: %w", id, err)
		}
		priv, _ := d.PrivateIPv4()
		if host, _, _ := net.SplitHostPort(c.PeerAddr); host != priv {
			return fmt.Errorf("droplet %d has private address %s, the connection comes from %s", id, priv, c.PeerAddr)
		}
		seen.mu.Lock()
		seen.by[c.ProviderID] = c
		seen.mu.Unlock()
		return nil
	}
	coord, err := coordinator.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- coord.Run(runCtx) }()
	t.Cleanup(func() { // after the droplets are gone: before the pool closes
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("coordinator: %v", err)
		}
		coord.Close()
	})
	var dl coordinator.AgentDownload
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "coordinator serving", func() error {
		if _, err := os.Stat(ccfg.AdminConfig); err != nil {
			return err
		}
		dl, err = coord.AgentDownload()
		return err
	})
	ccl, err := cml.ConfigFromFile(ccfg.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cml.New(ccl)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Two droplets, each with its own single-use token in its user-data.
	names := []string{"ml-1", "ml-2"}
	userData := map[string]string{}
	for _, name := range names {
		tok, err := coord.MintToken("droplet "+name, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		ud, err := cloudinit.Render(cloudinit.Config{
			Name: name, CoordinatorAddr: coord.Addr(), CACertPEM: coord.CACertPEM(),
			AgentURL: dl.URL, AgentSHA256: dl.SHA256, JoinToken: tok, Slots: 2, LogLevel: "debug",
		})
		if err != nil {
			t.Fatal(err)
		}
		userData[name] = string(ud.Bytes())
	}
	created := time.Now()
	ids := map[string]int{}
	for _, name := range names {
		ids[name] = p.create(t, name, userData[name])
	}
	private := map[string]string{}
	for _, name := range names {
		d := p.active(t, ids[name])
		private[name], _ = d.PrivateIPv4()
	}
	active := time.Since(created)

	var registered, inSwarm time.Duration
	var nodes []*cloudmlv1.Node
	testutil.Eventually(t, 120*time.Second, 50*time.Millisecond, "both droplets' agents in the swarm", func() error {
		for _, name := range names {
			if m, ok := p.b.Machine(ids[name]); ok && m.CloudInit == "failed" {
				t.Fatalf("%s: cloud-init failed: %v\n%s", name, m.CloudInitError, strings.Join(m.Console, "\n"))
			}
		}
		var err error
		if nodes, err = cl.Nodes(ctx); err != nil {
			return err
		}
		ready, swarmed := 0, 0
		for _, n := range nodes {
			if n.GetState() == cloudmlv1.NodeState_NODE_STATE_READY {
				ready++
				if n.GetSwarmNodeId() != "" {
					swarmed++
				}
			}
		}
		if ready == len(names) && registered == 0 {
			registered = time.Since(created)
		}
		if swarmed < len(names) {
			return fmt.Errorf("%d ready, %d in the swarm", ready, swarmed)
		}
		inSwarm = time.Since(created)
		return nil
	})
	t.Logf("figure: droplets create → active %s, → agents registered %s, → every node in the swarm %s (2 droplets)",
		active.Round(time.Millisecond), registered.Round(time.Millisecond), inSwarm.Round(time.Millisecond))

	// Each node is the droplet it claimed to be, checked at registration.
	got := seen.get()
	var manager string
	for _, n := range nodes {
		name := n.GetHostname()
		id, ok := ids[name]
		if !ok || n.GetAddress() != private[name] {
			t.Errorf("node %s: hostname %q address %s, want a droplet's name and private address", n.GetId(), name, n.GetAddress())
			continue
		}
		if c, ok := got[strconv.Itoa(id)]; !ok || c.TokenLabel != "droplet "+name {
			t.Errorf("droplet %d (%s): registration claim %+v, want its id with its own token", id, name, c)
		}
		if n.GetSwarmRole() == "manager" {
			manager = name
		}
	}
	if len(got) != len(names) {
		t.Errorf("registrations %v, want one per droplet", got)
	}
	if manager == "" {
		t.Fatalf("no manager among %v", nodes)
	}
	m, _ := p.b.Machine(ids[manager])
	dcli, err := client.NewClientWithOpts(client.WithHost(m.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer dcli.Close()
	swarmNodes, err := dcli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		t.Fatalf("docker node ls on the manager %s: %v", manager, err)
	}
	var hosts []string
	for _, sn := range swarmNodes {
		if sn.Status.State == swarm.NodeStateReady {
			hosts = append(hosts, sn.Description.Hostname)
		}
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, names) {
		t.Errorf("docker node ls on %s: ready nodes %v, want the droplets %v", manager, hosts, names)
	}

	// A container job across both, its code bind-mounted from what each
	// agent staged in its droplet's /var/lib/cloudml.
	code := t.TempDir()
	task := "echo \"task $CLOUDML_TASK_INDEX x=$CLOUDML_PARAM_X\"\nsleep 1\necho \"{\\\"x\\\": $CLOUDML_PARAM_X}\" > \"$CLOUDML_OUTPUT_DIR/metrics.json\"\n"
	if err := os.WriteFile(filepath.Join(code, "task.sh"), []byte(task), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := jobspec.Parse([]byte(fmt.Sprintf("name: spread\ncode: %s\nimage: %s\ncommand: [sh, task.sh]\nsweep: {grid: {x: [1, 2, 3, 4]}}\n",
		code, netns.BusyboxImage)), "cloudml.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := cl.Submit(ctx, spec, cml.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jobStart := time.Now()
	var job *cloudmlv1.Job
	testutil.Eventually(t, 120*time.Second, 50*time.Millisecond, "job done", func() error {
		var err error
		if job, err = cl.Job(ctx, sub.Job.GetId()); err != nil {
			return err
		}
		switch job.GetState() {
		case cloudmlv1.JobState_JOB_STATE_SUCCEEDED:
			return nil
		case cloudmlv1.JobState_JOB_STATE_FAILED:
			t.Fatalf("job failed: %v", job.GetTasks())
		}
		return errors.New(job.GetState().String())
	})
	ran := map[string]bool{}
	for _, tk := range job.GetTasks() {
		ran[tk.GetNodeId()] = true
		if tk.GetMetrics()["x"] == 0 {
			t.Errorf("task %d reported no metric: %v", tk.GetIndex(), tk)
		}
	}
	if len(ran) != len(names) {
		t.Errorf("tasks ran on nodes %v, want both droplets", ran)
	}
	t.Logf("figure: 4-task container job on the droplets' swarm done in %s", time.Since(jobStart).Round(time.Millisecond))

	// Deleting the droplets leaves nothing of them.
	for _, name := range names {
		p.delete(t, ids[name])
	}
	if st := p.s.Stats(); st.Alive != 0 || st.BootFailures != 0 {
		t.Errorf("dofake: %+v, want no droplet alive, no boot failure", st)
	}
	if st := p.b.Stats(); st.Running != 0 || st.Free != len(names) || st.Strays != 0 {
		t.Errorf("pool: %+v, want no droplet running, every node free, no stray process", st)
	}
	for i, n := range p.b.Cluster().Nodes() {
		for _, pr := range nodeProcesses(t, p, i) {
			t.Errorf("node %s: process %d (%s) is left after its droplet was deleted", n.Name, pr.pid, pr.cmdline)
		}
	}

	// The baseline: the same nodes, freed, joined by a script.
	baseline, err := p.b.ScriptSwarm(ctx, len(names))
	if err != nil {
		t.Fatal(err)
	}
	if baseline.Init <= 0 || baseline.Init >= baseline.Took {
		t.Errorf("script times %+v: want an init time within the whole", baseline)
	}
	t.Logf("figure: docker swarm init/join by a script on the same 2 netns nodes %s (its init %s); droplets took %.1fx", baseline.Took.Round(time.Millisecond),
		baseline.Init.Round(time.Millisecond), inSwarm.Seconds()/baseline.Took.Seconds())
}

type procInfo struct {
	pid     int
	cmdline string
}

// nodeProcesses lists the processes in node i's network namespace that
// are not its Docker (dockerd, containerd, shims and below).
func nodeProcesses(t *testing.T, p *pool, i int) []procInfo {
	t.Helper()
	n := p.b.Cluster().Nodes()[i]
	daemon, err := p.b.Cluster().DockerPID(i)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.Stat(n.NetnsPath)
	if err != nil {
		t.Fatal(err)
	}
	execRoot := filepath.Dir(strings.TrimPrefix(n.DockerHost, "unix://")) + "/"
	entries, _ := os.ReadDir("/proc")
	parent, cmdlines, inNode := map[int]int{}, map[int]string{}, map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		parent[pid], _ = strconv.Atoi(f[1])
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cmdlines[pid] = strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " ")
		if st, err := os.Stat("/proc/" + e.Name() + "/ns/net"); err == nil && os.SameFile(st, want) {
			inNode[pid] = true
		}
	}
	docker := func(pid int) bool {
		for ; pid > 1; pid = parent[pid] {
			if pid == daemon || strings.Contains(cmdlines[pid], execRoot) {
				return true
			}
		}
		return false
	}
	var out []procInfo
	for pid := range inNode {
		if !docker(pid) {
			out = append(out, procInfo{pid, cmdlines[pid]})
		}
	}
	return out
}
