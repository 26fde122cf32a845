package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// cluster is a coordinator process with local agents, as `coordinator serve
// --provider local` starts it for a user.
type cluster struct {
	t      *testing.T
	addr   string
	home   string
	bucket string
	env    []string
	cmd    *exec.Cmd
	args   []string
	log    *testutil.SyncBuffer
	// secretValues are values a test planted that no log may hold.
	secretValues []string
}

type clusterOpts struct {
	nodes, slots int
	bucket       string   // default file://<home>/bucket
	env          []string // extra environment for every process
	serveArgs    []string // more flags of coordinator serve (a repeated flag's last value wins)
}

func startCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	home := t.TempDir()
	if o.bucket == "" {
		o.bucket = "file://" + filepath.Join(home, "bucket")
	}
	// The coordinator writes its admin credential where CLOUDML_CONFIG
	// points, and every client run reads it from there.
	c := &cluster{t: t, addr: freeAddr(t), home: home, bucket: o.bucket, log: &testutil.SyncBuffer{},
		env: append(os.Environ(), append(o.env, pki.ConfigEnv+"="+filepath.Join(home, "config"))...)}
	args := []string{"serve", "--listen", c.addr, "--provider", "local", "--nodes", fmt.Sprint(o.nodes),
		"--state", filepath.Join(home, "state"), "--bucket", o.bucket, "--heartbeat", "500ms", "--node-down-after", "30s",
		"--agent-bin", bin("cloudml-agent"), "--log-level", "debug", "--agent-log-level", "debug"}
	if o.slots > 0 {
		args = append(args, "--slots", fmt.Sprint(o.slots))
	}
	c.args = append(args, o.serveArgs...)
	c.start()
	t.Cleanup(c.stop)
	c.waitNodes(o.nodes)
	return c
}

func (c *cluster) start() {
	c.t.Helper()
	c.cmd = exec.Command(bin("coordinator"), c.args...)
	c.cmd.Env = c.env
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start coordinator: %v", err)
	}
}

// restart stops the coordinator (and so its agents) and starts it again on
// the same state, address and work directories.
func (c *cluster) restart(nodes int) {
	c.t.Helper()
	c.stop()
	c.start()
	c.waitNodes(nodes)
}

// stop ends the coordinator (which stops its agents) and checks it exits.
func (c *cluster) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			c.t.Errorf("coordinator exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		<-done
		c.t.Errorf("coordinator did not stop within 20s of SIGTERM")
	}
	c.checkNoSecrets()
	if c.t.Failed() {
		c.t.Logf("coordinator log:\n%s", c.log.String())
	}
}

// waitNodes polls `cluster nodes` until n nodes are ready.
func (c *cluster) waitNodes(n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r := c.client("-o", "json", "cluster", "nodes")
		if r.Code == 0 && strings.Count(r.Stdout, "NODE_STATE_READY") >= n {
			return
		}
		if c.cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("%d nodes not ready within 30s\ncoordinator log:\n%s", n, c.log.String())
}

// client runs cloudml-client against the cluster.
func (c *cluster) client(args ...string) testutil.ClientResult {
	c.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: c.addr, Env: c.env}.Run(c.t, args...)
}

// mustClient runs the client and fails the test unless it exits 0.
func (c *cluster) mustClient(args ...string) string {
	c.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: c.addr, Env: c.env}.Must(c.t, args...)
}

// jsonOf runs the client with -o json and decodes its output.
func (c *cluster) jsonOf(v any, args ...string) {
	c.t.Helper()
	out := c.mustClient(append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("decode %v output: %v\n%s", args, err, out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
