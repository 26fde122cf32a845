package netns

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/coordinator/provider"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
	cluster "github.com/cloudml/cloudml/internal/netns"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// greeting is one line a fake agent sent to the coordinator's address.
type greeting struct {
	from string // source IP
	line string
}

// serveGreetings accepts connections on lis and reports the first line of
// each, until lis is closed; the returned function waits for that.
func serveGreetings(lis net.Listener, out chan<- greeting) func() {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
			conn.Close()
			out <- greeting{from: host, line: strings.TrimSpace(line)}
		}
	})
	return wg.Wait
}

func TestRunStartsAgentsInNamespacesAndTearsDown(t *testing.T) {
	testutil.NeedSystem(t, "root, docker.io and iproute2", cluster.Check())
	testutil.Short(t)
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, work := t.TempDir(), t.TempDir()
	logs := &testutil.SyncBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: logs, Level: hclog.Info})
	name := cluster.UniqueName("pv")
	p, err := New(Config{Nodes: 2, AgentBinary: script, WorkDir: work, Env: []string{"FAKE_AGENT_OUT=" + out}, LogLevel: "debug", Name: name}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if p.ListenAddr(7070) != "" {
		t.Errorf("ListenAddr before Setup = %q, want empty", p.ListenAddr(7070))
	}
	if err := p.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	lis, err := net.Listen("tcp", p.ListenAddr(0))
	if err != nil {
		t.Fatal(err)
	}
	greetings := make(chan greeting, 4)
	waitServe := serveGreetings(lis, greetings)
	defer func() { lis.Close(); waitServe() }()

	if err := p.Start(ctx, provider.Target{Addr: lis.Addr().String(), MintToken: fakeMint}); err != nil {
		t.Fatal(err)
	}
	made, err := p.Create(ctx, provider.CreateRequest{Request: "r1", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Create(ctx, provider.CreateRequest{Request: "r2", Count: 1}); !errors.Is(err, provider.ErrCapacity) {
		t.Errorf("Create beyond the namespaces = %v, want ErrCapacity", err)
	}

	nodes := p.Cluster().Nodes()
	for i, n := range made {
		if n.ID != nodes[i].Name+"-1" || n.Name != nodes[i].Name || n.PrivateIP.String() != nodes[i].Addr {
			t.Errorf("node %d = %+v, want namespace %s at %s", i, n, nodes[i].Name, nodes[i].Addr)
		}
	}
	var got []greeting
	timeout := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case g := <-greetings:
			got = append(got, g)
		case <-timeout:
			t.Fatalf("agents did not reach the coordinator's address; got %v; logs:\n%s", got, logs)
		}
	}
	slices.SortFunc(got, func(a, b greeting) int { return strings.Compare(a.from, b.from) })
	want := []greeting{{nodes[0].Addr, "hello from " + nodes[0].Name}, {nodes[1].Addr, "hello from " + nodes[1].Name}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(greeting{})); diff != "" {
		t.Errorf("greetings over the bridge (-want +got):\n%s", diff)
	}

	files, _ := filepath.Glob(filepath.Join(out, "args-[0-9]*"))
	if len(files) != 2 {
		t.Fatalf("got %d argument records, want 2", len(files))
	}
	var pids []int
	records := map[string][]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		records[lines[slices.Index(lines, "--hostname")+1]] = lines // keyed by --hostname's value
		pid, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "args-"))
		pids = append(pids, pid)
	}
	for idx, n := range nodes {
		want := []string{
			"--coordinator", lis.Addr().String(),
			"--work-dir", filepath.Join(work, "node-"+strconv.Itoa(idx+1)),
			"--address", n.Addr, "--hostname", n.Name, "--log-level", "debug",
			"DOCKER_HOST=" + n.DockerHost,
			"NETNS=" + strconv.FormatUint(inode(t, n.NetnsPath), 10),
		}
		if diff := cmp.Diff(want, records[n.Name]); diff != "" {
			t.Errorf("agent of %s: argv, DOCKER_HOST, netns (-want +got):\n%s", n.Name, diff)
		}
		cli, err := p.Cluster().DockerClient(idx)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := cli.Info(ctx); err != nil || info.Name != n.Name {
			t.Errorf("daemon of %s: Info name %q, error %v", n.Name, info.Name, err)
		}
		cli.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "warning on stderr") || !strings.Contains(logs.String(), "coordinator.agent-2") {
		if time.Now().After(deadline) {
			t.Fatalf("agent output not forwarded; logs:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("agent %d still exists after Run returned (kill -0: %v)", pid, err)
		}
	}
	if !strings.Contains(logs.String(), "stopping") {
		t.Errorf("agents were not stopped with SIGTERM:\n%s", logs)
	}
	if left := cluster.Leftovers(t.Context(), name, filepath.Join(work, "docker")); len(left) > 0 {
		t.Errorf("Close left behind:\n%s", strings.Join(left, "\n"))
	}
}

// The namespaces are the machines: a deleted node's namespace takes the
// next create's agent.
func TestNetnsKeepsTheContract(t *testing.T) {
	testutil.NeedSystem(t, "root, docker.io and iproute2", cluster.Check())
	testutil.Short(t)
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	name := cluster.UniqueName("pc")
	work := t.TempDir()
	providertest.Contract(t, func(t *testing.T, target provider.Target) provider.Provider {
		p, err := New(Config{Nodes: 3, AgentBinary: script, WorkDir: work, Env: []string{"FAKE_AGENT_OUT=" + t.TempDir()}, Name: name}, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := p.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if left := cluster.Leftovers(context.Background(), name, filepath.Join(work, "docker")); len(left) > 0 {
				t.Errorf("Close left behind:\n%s", strings.Join(left, "\n"))
			}
		})
		if err := p.Setup(t.Context()); err != nil {
			t.Fatal(err)
		}
		target.Addr = p.ListenAddr(7070) // nothing listens: the fake agent's greeting fails, and it goes on
		if err := p.Start(t.Context(), target); err != nil {
			t.Fatal(err)
		}
		return p
	})
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func TestAgentAddr(t *testing.T) {
	p := &Provider{}
	for _, addr := range []string{"127.0.0.1:7070", "localhost:7070", "[::1]:7070"} {
		if _, err := p.AgentAddr(addr); !errors.Is(err, ErrUnreachableTarget) {
			t.Errorf("AgentAddr(%q) = %v, want ErrUnreachableTarget", addr, err)
		}
	}
	if _, err := p.AgentAddr("0.0.0.0:7070"); !errors.Is(err, ErrNotSetUp) {
		t.Errorf("AgentAddr of a wildcard before Setup = %v, want ErrNotSetUp", err)
	}
	if got, err := p.AgentAddr("10.213.0.1:7070"); err != nil || got != "10.213.0.1:7070" {
		t.Errorf("AgentAddr of the bridge address = %q, %v", got, err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Nodes: 0}, {Nodes: 1, Slots: -1}, {Nodes: 1, Name: "Bad-Name"}, {Nodes: cluster.MaxNodes + 1}, {Nodes: 1, Restart: local.RestartPolicy{StableAfter: -1}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	c := Config{Nodes: 1}
	if err := c.Validate(); err != nil || c.LogLevel != "info" || c.Name != "cml" || c.Restart != local.DefaultRestartPolicy() {
		t.Errorf("Validate defaults: %v, %+v", err, c)
	}
	if _, err := New(Config{Nodes: 1}, nil); err == nil {
		t.Error("New without a work dir succeeded")
	}
}

// fakeMint stands for the coordinator's MintToken.
func fakeMint(label string, slots int) (string, error) { return "CMLTKN-1-test", nil }
