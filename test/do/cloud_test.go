package do

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// clusterName is the coordinators' --cluster-name: every droplet carries
// the tag cloudml-cluster:e2e.
const clusterName = "e2e"

// cloud is the dofake command: the API, a pool of network-namespace
// nodes its droplets boot on, and a fake GCS bucket they reach.
type cloud struct {
	t       *testing.T
	name    string // the pool's netns prefix
	workDir string
	console string // the droplets' consoles
	env     map[string]string
	cmd     *exec.Cmd
	out     testutil.SyncBuffer
	exited  chan struct{}
	summary string // its last line, once it exited
}

// startCloud runs dofake with a pool of nodes and waits until it wrote
// its environment file.
func startCloud(t *testing.T, nodes int) *cloud {
	t.Helper()
	dir := t.TempDir()
	c := &cloud{t: t, name: netns.UniqueName("dot"), workDir: filepath.Join(dir, "work"), console: filepath.Join(dir, "console.log"),
		env: map[string]string{}, exited: make(chan struct{})}
	envFile := filepath.Join(dir, "dofake.env")
	c.cmd = exec.Command(bin("dofake"), "--nodes", strconv.Itoa(nodes), "--name", c.name, "--work-dir", c.workDir,
		"--bucket", "cloudml-do", "--env-file", envFile, "--console", c.console, "--log-level", "info")
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start dofake: %v", err)
	}
	go func() {
		c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.stop)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, err := os.ReadFile(envFile)
		if err == nil {
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				k, v, _ := strings.Cut(line, "=")
				c.env[k] = v
			}
			return c
		}
		select {
		case <-c.exited:
			t.Fatalf("dofake exited before it was ready:\n%s", c.out.String())
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatalf("dofake not ready within 2m:\n%s", c.out.String())
		}
	}
}

// stop ends dofake with SIGTERM (it halts what is left and tears the pool
// down) and checks that nothing of the pool is left on this machine.
func (c *cloud) stop() {
	if c.summary != "" {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(3 * time.Minute):
		c.cmd.Process.Kill()
		<-c.exited
		c.t.Errorf("dofake did not stop within 3m of SIGTERM")
	}
	out := strings.TrimSpace(c.out.String())
	c.summary = out[strings.LastIndexByte(out, '\n')+1:]
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Errorf("dofake exited %d:\n%s", code, out)
	}
	if left := netns.Leftovers(context.Background(), c.name, c.workDir); len(left) > 0 {
		c.t.Errorf("the pool left behind: %v", left)
		netns.Cleanup(c.name)
	}
	if c.t.Failed() {
		console, _ := os.ReadFile(c.console)
		c.t.Logf("dofake output:\n%s\ndroplet consoles:\n%s", out, tail(string(console), 200))
	}
}

// droplets counts the droplets the API shows with the cluster's tag.
func (c *cloud) droplets() int {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.env["DOFAKE_API_URL"]+"v2/droplets?per_page=200&tag_name="+url.QueryEscape("cloudml-cluster:"+clusterName), nil)
	req.Header.Set("Authorization", "Bearer "+c.env["DIGITALOCEAN_TOKEN"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("list droplets: %v", err)
	}
	defer resp.Body.Close()
	var list struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != http.StatusOK {
		c.t.Fatalf("list droplets: %s: %v", resp.Status, err)
	}
	return list.Meta.Total
}

// summaryRE is dofake's last line.
var summaryRE = regexp.MustCompile(`^dofake: droplets created (\d+), deleted (\d+), left (\d+)$`)

// coordinator is `coordinator serve --provider digitalocean` against the
// cloud, on the bridge address the droplets reach.
type coordinator struct {
	t      *testing.T
	addr   string
	state  string
	config string // the admin credential it writes
	env    []string
	cmd    *exec.Cmd
	log    testutil.SyncBuffer
	exited chan struct{}
}

// startCoordinator serves a coordinator on state (a new one when empty)
// at the cloud's host address, with extra flags, and waits until it wrote
// its admin credential.
func (c *cloud) startCoordinator(t *testing.T, state, addr string, extra ...string) *coordinator {
	t.Helper()
	co := &coordinator{t: t, addr: addr, state: state, config: filepath.Join(state, "admin.config"), exited: make(chan struct{})}
	co.env = append(os.Environ(), "DIGITALOCEAN_TOKEN="+c.env["DIGITALOCEAN_TOKEN"],
		"STORAGE_EMULATOR_HOST="+c.env["STORAGE_EMULATOR_HOST"], pki.ConfigEnv+"="+co.config)
	args := append([]string{"serve", "--provider", "digitalocean", "--do-api-url", c.env["DOFAKE_API_URL"],
		"--listen", addr, "--advertise", addr, "--swarm-peers", c.env["DOFAKE_SUBNET"], "--cluster-name", clusterName,
		"--state", state, "--admin-config", co.config, "--bucket", c.env["DOFAKE_BUCKET"] + "/runs",
		"--agent-bin", bin("cloudml-agent"), "--log-level", "debug", "--agent-log-level", "debug"}, extra...)
	co.cmd = exec.Command(bin("coordinator"), args...)
	co.cmd.Env = co.env
	co.cmd.Stdout, co.cmd.Stderr = &co.log, &co.log
	if err := co.cmd.Start(); err != nil {
		t.Fatalf("start coordinator: %v", err)
	}
	go func() {
		co.cmd.Wait()
		close(co.exited)
	}()
	t.Cleanup(co.stop)
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(co.config); err == nil {
			return co
		}
		select {
		case <-co.exited:
			t.Fatalf("the coordinator exited:\n%s", co.log.String())
		case <-time.After(50 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatalf("the coordinator wrote no credential within 1m:\n%s", co.log.String())
		}
	}
}

// kill ends the coordinator with SIGKILL, as a crash would.
func (co *coordinator) kill() {
	co.cmd.Process.Kill()
	<-co.exited
}

// stop ends the coordinator with SIGTERM; its droplets stay.
func (co *coordinator) stop() {
	select {
	case <-co.exited:
	default:
		co.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-co.exited:
			if err := co.cmd.ProcessState; !err.Success() {
				co.t.Errorf("coordinator exited with %v", co.cmd.ProcessState)
			}
		case <-time.After(time.Minute):
			co.cmd.Process.Kill()
			<-co.exited
			co.t.Errorf("coordinator did not stop within 1m of SIGTERM")
		}
	}
	if co.t.Failed() {
		co.t.Logf("coordinator log:\n%s", tail(co.log.String(), 300))
	}
}

// client runs cloudml-client against the coordinator.
func (co *coordinator) client(args ...string) testutil.ClientResult {
	co.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: co.addr, Env: co.env}.Run(co.t, args...)
}

// must runs the client and fails the test unless it exits 0.
func (co *coordinator) must(args ...string) string {
	co.t.Helper()
	return testutil.Client{Bin: bin("cloudml-client"), Addr: co.addr, Env: co.env}.Must(co.t, args...)
}

// freeAddrPair returns host:port where port and port+1 (the agent
// download, by default) were free a moment ago.
func freeAddrPair(t *testing.T, host string) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return net.JoinHostPort(host, strconv.Itoa(port))
		}
	}
	t.Fatal("no two free ports in a row")
	return ""
}

// agents lists the cloudml-agent processes that dial coordinator addr.
func agents(addr string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != "cloudml-agent" {
			continue
		}
		for i := 1; i < len(args); i++ {
			if args[i-1] == "--coordinator" && args[i] == addr {
				out = append(out, filepath.Base(filepath.Dir(p))+" "+strings.Join(args, " "))
			}
		}
	}
	return out
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
