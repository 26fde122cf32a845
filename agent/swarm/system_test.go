package swarm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

// needSystem skips (fails under CI) without root, dockerd, iproute2, ufw
// and unshare.
func needSystem(t *testing.T) {
	t.Helper()
	testutil.Short(t)
	err := netns.Check()
	for _, bin := range []string{"ufw", "unshare", "mount"} {
		if _, lerr := exec.LookPath(bin); err == nil && lerr != nil {
			err = lerr
		}
	}
	testutil.NeedSystem(t, "root, docker.io, iproute2 and ufw", err)
}

// hostUFW fingerprints the host's ufw: its status and its config files.
func hostUFW(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ufw", "status", "verbose").CombinedOutput()
	if err != nil {
		t.Fatalf("ufw status on the host: %v: %s", err, out)
	}
	h := sha256.New()
	h.Write(out)
	files, _ := filepath.Glob("/etc/ufw/*")
	for _, f := range append(files, "/etc/default/ufw") {
		b, _ := os.ReadFile(f)
		fmt.Fprintf(h, "%s %d %x\n", f, len(b), sha256.Sum256(b))
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// nodeUFW runs ufw inside node i's network namespace with a private copy
// of /etc/ufw and /etc/default/ufw bind-mounted in a private mount
// namespace: each node has its own firewall config, as separate machines
// do, and the host's files are never written.
func nodeUFW(t *testing.T, c *netns.Cluster, i int) func(ctx context.Context, name string, args ...string) ([]byte, error) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "/etc/ufw", filepath.Join(dir, "etc-ufw")).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/ufw: %v: %s", err, out)
	}
	if out, err := exec.Command("cp", "-a", "/etc/default/ufw", filepath.Join(dir, "default-ufw")).CombinedOutput(); err != nil {
		t.Fatalf("copy /etc/default/ufw: %v: %s", err, out)
	}
	const script = `mount --bind "$0" /etc/ufw && mount --bind "$1" /etc/default/ufw && shift && exec "$@"`
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		argv := append([]string{"--mount", "--propagation", "private", "sh", "-c", script,
			filepath.Join(dir, "etc-ufw"), filepath.Join(dir, "default-ufw"), name}, args...)
		return c.Command(ctx, i, "unshare", argv...).CombinedOutput()
	}
}

func TestSwarmOnNetnsCluster(t *testing.T) {
	needSystem(t)
	before := hostUFW(t)
	t.Cleanup(func() {
		if after := hostUFW(t); after != before {
			t.Error("the host's ufw state or config changed")
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	log := testutil.Logger(t)

	start := time.Now()
	c, err := netns.Create(ctx, netns.Config{Name: netns.UniqueName("sw"), Nodes: 3, WorkDir: t.TempDir(), Logger: log, Dockerd: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster: %v", err)
		}
	})
	t.Logf("cluster of 3 daemons up in %v", time.Since(start).Round(time.Millisecond))
	nodes := c.Nodes()
	peers := []string{c.Subnet().String()}
	clis := make([]*client.Client, len(nodes))
	ms := make([]*Manager, len(nodes))
	ufw := make([]*UFW, len(nodes))
	for i, n := range nodes {
		cli, err := NewDocker(n.DockerHost)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		clis[i] = cli
		ufw[i] = &UFW{Run: nodeUFW(t, c, i)}
		ms[i] = &Manager{Docker: cli, Firewall: ufw[i], Logger: log.Named(n.Name)}
	}
	run := func(i int, args ...string) string {
		t.Helper()
		out, err := ufw[i].run(ctx, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	timed := func(what string, f func() error) error {
		start := time.Now()
		err := f()
		t.Logf("%s: %v (err: %v)", what, time.Since(start).Round(time.Millisecond), err)
		return err
	}

	// Node 0 founds the swarm (its ufw is inactive: no rules), node 1 joins.
	var mem0, mem1, mem2 Membership
	if err := timed("init on node 0", func() (err error) { mem0, err = ms[0].Init(ctx, nodes[0].Addr, peers); return err }); err != nil {
		t.Fatal(err)
	}
	if !mem0.Manager || mem0.ManagerAddr != nodes[0].Addr+":2377" || !strings.HasPrefix(mem0.WorkerToken, "SWMTKN-1-") || mem0.ClusterID == "" {
		t.Fatalf("manager membership %+v", Membership{NodeID: mem0.NodeID, ClusterID: mem0.ClusterID, Manager: mem0.Manager, ManagerAddr: mem0.ManagerAddr})
	}
	info, err := clis[0].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := tokenCADigest(mem0.WorkerToken); d != caDigest(info.Swarm.Cluster.TLSInfo.TrustRoot) {
		t.Errorf("the token's CA digest does not match the cluster's root CA")
	}
	if strings.Contains(run(0, "status"), "2377") {
		t.Error("swarm rules added to an inactive firewall")
	}
	if err := timed("join of node 1", func() (err error) {
		mem1, err = ms[1].Join(ctx, []string{mem0.ManagerAddr}, mem0.WorkerToken, nodes[1].Addr, peers)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// Nodes 0 and 2 deny incoming traffic; node 2's join fails although it
	// opens its own ports, since the manager's are closed.
	for _, i := range []int{0, 2} {
		run(i, "default", "deny", "incoming")
		run(i, "--force", "enable")
		t.Cleanup(func() {
			ufw[i].run(context.Background(), "--force", "reset")
			ufw[i].run(context.Background(), "disable")
		})
	}
	err = timed("join of node 2 through the manager's closed firewall", func() (err error) {
		_, err = ms[2].Join(ctx, []string{mem0.ManagerAddr}, mem0.WorkerToken, nodes[2].Addr, peers)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "is 2377/tcp open on the manager and this node?") {
		t.Fatalf("join through a closed firewall: err = %v, want the firewall hint", err)
	}
	if st := run(2, "status"); !strings.Contains(st, "2377/tcp") || !strings.Contains(st, peers[0]) {
		t.Errorf("node 2 did not open its own swarm ports first:\n%s", st)
	}
	if _, in, err := ms[2].Current(ctx); err != nil || in {
		t.Fatalf("after the failed join node 2 is in a swarm %v or in trouble: %v", in, err)
	}

	// The manager's agent starts again: Init is a no-op that opens its ports.
	var again Membership
	if err := timed("init again on node 0", func() (err error) { again, err = ms[0].Init(ctx, nodes[0].Addr, peers); return err }); err != nil {
		t.Fatal(err)
	}
	if again != mem0 {
		t.Errorf("second init changed the membership: node %s -> %s", mem0.NodeID, again.NodeID)
	}
	if st := run(0, "status"); !strings.Contains(st, "2377/tcp") {
		t.Errorf("node 0's firewall still lacks the swarm ports:\n%s", st)
	}
	if err := timed("join of node 2 with the ports open", func() (err error) {
		mem2, err = ms[2].Join(ctx, []string{mem0.ManagerAddr}, mem0.WorkerToken, nodes[2].Addr, peers)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// The manager sees 3 ready nodes.
	want := map[string]bool{mem0.NodeID: true, mem1.NodeID: true, mem2.NodeID: true}
	var list []dswarm.Node
	start = time.Now()
	for deadline := time.Now().Add(time.Minute); ; {
		list, err = clis[0].NodeList(ctx, dswarm.NodeListOptions{})
		if err == nil && allReady(list, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes not ready within a minute: %v %v", describe(list), err)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("3 nodes ready after %v: %s", time.Since(start).Round(time.Millisecond), describe(list))

	// A second join of node 1 is a no-op; another swarm is refused.
	var joined Membership
	if err := timed("second join of node 1", func() (err error) {
		joined, err = ms[1].Join(ctx, []string{mem0.ManagerAddr}, mem0.WorkerToken, nodes[1].Addr, peers)
		return err
	}); err != nil || joined != mem1 {
		t.Errorf("second join: %v, node %s, want no-op on %s", err, joined.NodeID, mem1.NodeID)
	}
	if _, err := ms[1].Join(ctx, []string{"192.0.2.1"}, mem0.WorkerToken, nodes[1].Addr, peers); !errors.Is(err, ErrOtherSwarm) {
		t.Errorf("join of another swarm: err = %v, want ErrOtherSwarm", err)
	}
	if list, _ := clis[0].NodeList(ctx, dswarm.NodeListOptions{}); len(list) != 3 {
		t.Errorf("after the second join the swarm has %d nodes, want 3", len(list))
	}
	for i, want := range []Membership{mem0, mem1, mem2} {
		got, in, err := ms[i].Current(ctx)
		if err != nil || !in || got != want {
			t.Errorf("Current on node %d = %s manager=%v in=%v err=%v; want %s manager=%v", i, got.NodeID, got.Manager, in, err, want.NodeID, want.Manager)
		}
	}
}

func allReady(list []dswarm.Node, want map[string]bool) bool {
	if len(list) != len(want) {
		return false
	}
	for _, n := range list {
		if !want[n.ID] || n.Status.State != dswarm.NodeStateReady {
			return false
		}
	}
	return true
}

func describe(list []dswarm.Node) string {
	var b bytes.Buffer
	for _, n := range list {
		fmt.Fprintf(&b, "%s %s %s %s; ", n.ID, n.Status.Addr, n.Spec.Role, n.Status.State)
	}
	return b.String()
}
