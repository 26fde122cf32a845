package swarm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// swarmCluster is `coordinator serve --provider netns` with a fake GCS
// bucket the agents reach over the cluster's bridge.
type swarmCluster struct {
	t      *testing.T
	name   string // netns prefix
	subnet string
	addr   string // coordinator, for clients (loopback)
	gcs    *fakestorage.Server
	env    []string
	config string    // CLOUDML_CONFIG=<the admin credential>
	args   []string  // the coordinator's, kept for a restart
	tee    io.Writer // CLOUDML_SWARM_TEST_LOG's file, nil without
	cmd    *exec.Cmd
	mu     sync.Mutex
	log    bytes.Buffer
	nodes  int
	dcli   map[int]*client.Client // protected by mu
}

func (c *swarmCluster) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.Write(p)
}

func (c *swarmCluster) logText() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

// freeSubnet picks a 10.213.X.0/24 no interface or route of this host uses.
func freeSubnet(t *testing.T) (subnet, host string) {
	out, err := exec.Command("ip", "-4", "route", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	for x := 150 + os.Getpid()%50; x < 250; x++ {
		p := fmt.Sprintf("10.213.%d.", x)
		if !strings.Contains(string(out), p) {
			return p + "0/24", p + "1"
		}
	}
	t.Fatal("no free 10.213.X.0/24 subnet")
	return "", ""
}

func startSwarm(t *testing.T, nodes int) *swarmCluster {
	t.Helper()
	testutil.NeedSystem(t, "root, docker.io, iproute2 and iptables", netns.Check())
	subnet, host := freeSubnet(t)
	// An explicit port: with port 0 the fake listens on loopback only, and
	// the agents reach the host through the cluster's bridge.
	gcs, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "0.0.0.0", Port: freePort(t)})
	if err != nil {
		t.Fatalf("fake-gcs-server: %v", err)
	}
	t.Cleanup(gcs.Stop)
	gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "cloudml-swarm"})
	u, _ := url.Parse(gcs.URL())
	_, port, _ := net.SplitHostPort(u.Host)
	c := &swarmCluster{t: t, name: netns.UniqueName("cms"), subnet: subnet, gcs: gcs, nodes: nodes,
		addr: freeAddr(t), env: append(os.Environ(), "STORAGE_EMULATOR_HOST="+net.JoinHostPort(host, port))}
	t.Setenv("STORAGE_EMULATOR_HOST", net.JoinHostPort("127.0.0.1", port))
	state := t.TempDir()
	c.config = pki.ConfigEnv + "=" + filepath.Join(state, "admin.config") // the coordinator writes it, clients read it
	c.env = append(c.env, c.config)
	c.args = []string{"serve", "--provider", "netns", "--nodes", fmt.Sprint(nodes), "--slots", "2",
		"--netns-name", c.name, "--netns-subnet", subnet, "--listen", c.addr, "--state", state,
		"--bucket", "gs://cloudml-swarm/runs", "--heartbeat", "500ms", "--node-down-after", "30s", "--agent-bin", bin("cloudml-agent"),
		"--log-level", "debug", "--agent-log-level", "debug"}
	if path := os.Getenv("CLOUDML_SWARM_TEST_LOG"); path != "" { // for debugging a hang
		if f, err := os.Create(path); err == nil {
			t.Cleanup(func() { f.Close() }) // after c.stop, registered below: the coordinator writes until it exits
			c.tee = f
		}
	}
	c.startCoordinator()
	t.Cleanup(c.stop)
	c.waitSwarm()
	return c
}

// startCoordinator starts `coordinator serve` with c.args.
func (c *swarmCluster) startCoordinator() {
	c.t.Helper()
	c.cmd = exec.Command(bin("coordinator"), c.args...)
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = c, c
	if c.tee != nil {
		c.cmd.Stdout, c.cmd.Stderr = io.MultiWriter(c, c.tee), io.MultiWriter(c, c.tee)
	}
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start coordinator: %v", err)
	}
}

// killCoordinator kills the coordinator with SIGKILL and reaps it. On the
// netns provider its daemons and agents die with it (parent-death
// signals), containers included.
func (c *swarmCluster) killCoordinator(t *testing.T) {
	t.Helper()
	if c.cmd.Process == nil || c.cmd.Process.Pid <= 1 || c.cmd.ProcessState != nil {
		t.Fatalf("no running coordinator to kill")
	}
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := c.cmd.Wait()
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the coordinator did not die of SIGKILL: %v", err)
	}
}

// waitServing waits until the coordinator answers a client.
func (c *swarmCluster) waitServing(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "the coordinator answers", func() error {
		if c.cmd.ProcessState != nil {
			t.Fatalf("the coordinator exited: %v", c.cmd.ProcessState)
		}
		if r := c.client("cluster", "nodes"); r.Code != 0 {
			return fmt.Errorf("cluster nodes: exit %d: %s", r.Code, r.Stderr)
		}
		return nil
	})
}

func (c *swarmCluster) stop() {
	if c.cmd.ProcessState == nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("coordinator exited with %v", err)
			}
		case <-time.After(60 * time.Second):
			c.cmd.Process.Kill()
			<-done
			c.t.Errorf("coordinator did not stop within 60s of SIGTERM")
		}
	}
	if left := netns.Leftovers(context.Background(), c.name, ""); len(left) > 0 {
		c.t.Errorf("netns cluster left behind: %v", left)
		netns.Cleanup(c.name)
	}
	if c.t.Failed() {
		c.t.Logf("coordinator log:\n%s", c.logText())
	}
}

type nodeJSON struct {
	ID          string `json:"id"`
	State       string `json:"state"`
	Address     string `json:"address"`
	SwarmNodeID string `json:"swarmNodeId"`
	SwarmRole   string `json:"swarmRole"`
	Message     string `json:"message"`
}

func (c *swarmCluster) listNodes() []nodeJSON {
	var l struct {
		Nodes []nodeJSON `json:"nodes"`
	}
	r := c.client("-o", "json", "cluster", "nodes")
	if r.Code != 0 {
		return nil
	}
	json.Unmarshal([]byte(r.Stdout), &l)
	return l.Nodes
}

// waitSwarm waits until every node is ready and in the swarm.
func (c *swarmCluster) waitSwarm() {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		in := 0
		for _, n := range c.listNodes() {
			if n.State == "NODE_STATE_READY" && n.SwarmNodeID != "" {
				in++
			}
		}
		if in == c.nodes {
			return
		}
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("the %d nodes did not form a swarm within 90s:\n%s", c.nodes, c.logText())
}

// docker returns a client of node i's daemon.
func (c *swarmCluster) docker(i int) *client.Client {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if cli := c.dcli[i]; cli != nil {
		return cli
	}
	cli, err := client.NewClientWithOpts(client.WithHost(netns.DockerHost(c.name, i)), client.WithAPIVersionNegotiation())
	if err != nil {
		c.t.Fatal(err)
	}
	if c.dcli == nil {
		c.dcli = map[int]*client.Client{}
	}
	c.dcli[i] = cli
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// client runs cloudml-client against the cluster.
func (c *swarmCluster) client(args ...string) testutil.ClientResult {
	c.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: c.addr, Env: append(os.Environ(), c.config)}.Run(c.t, args...)
}

// mustClient runs the client and fails the test unless it exits 0.
func (c *swarmCluster) mustClient(args ...string) string {
	c.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: c.addr, Env: append(os.Environ(), c.config)}.Must(c.t, args...)
}

func freePort(t *testing.T) uint16 {
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// codeDir writes a task script.
func codeDir(t *testing.T, script string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "task.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// killAgent kills node i's agent with SIGKILL and waits until the
// provider has started it again (as systemd would on a droplet). The new
// agent keeps the node's identity and work dir.
func (c *swarmCluster) killAgent(t *testing.T, i int) {
	t.Helper()
	ns := fmt.Sprintf("%s-n%d", c.name, i)
	pid, ok := findAgent(t, ns)
	if !ok || pid <= 1 {
		t.Fatalf("no agent process found for %s (pid %d): refusing to signal it", ns, pid) // kill(0) would hit this test's own process group
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if again, ok := findAgent(t, ns); ok && again != pid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s was not restarted after SIGKILL", ns)
		}
	}
}

// findAgent returns the pid of the agent whose --hostname is ns.
func findAgent(t *testing.T, ns string) (int, bool) {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "cloudml-agent" {
			continue
		}
		for k := 1; k < len(args); k++ {
			if args[k-1] == "--hostname" && args[k] == ns {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				return pid, true
			}
		}
	}
	return 0, false
}
