package local

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
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
	"github.com/cloudml/cloudml/coordinator/provider/providertest"
	"github.com/cloudml/cloudml/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mints records the join tokens a provider asked for.
type mints struct {
	mu    sync.Mutex
	calls []string // "label/slots"
}

func (m *mints) mint(label string, slots int) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, label+"/"+strconv.Itoa(slots))
	return "CMLTKN-1-test-" + label, nil
}

func (m *mints) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// fakeRun is a started Provider with testdata/fake-agent.sh as the agent;
// each agent records its argv in out/args-PID and its token in
// out/token-PID.
type fakeRun struct {
	t     *testing.T
	p     *Provider
	out   string
	work  string
	logs  *testutil.SyncBuffer
	mints *mints
}

func startFake(t *testing.T, cfg Config) *fakeRun {
	t.Helper()
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRun{t: t, out: t.TempDir(), logs: &testutil.SyncBuffer{}, mints: &mints{}}
	cfg.AgentBinary = script
	cfg.Env = []string{"FAKE_AGENT_OUT=" + r.out}
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	r.work = cfg.WorkDir
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: r.logs, Level: hclog.Info})
	if r.p, err = New(cfg, log); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Start(t.Context(), provider.Target{Addr: "127.0.0.1:7070", MintToken: r.mints.mint}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.p.Close() })
	return r
}

func (r *fakeRun) create(req provider.CreateRequest) []provider.Node {
	r.t.Helper()
	if req.Request == "" {
		req.Request = provider.NewRequestID()
	}
	nodes, err := r.p.Create(r.t.Context(), req)
	if err != nil {
		r.t.Fatalf("Create %+v: %v", req, err)
	}
	return nodes
}

// starts waits for n agent starts and returns each one's argv by pid.
func (r *fakeRun) starts(n int) map[int]string {
	r.t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(r.out, "args-[0-9]*"))
		if len(files) >= n {
			argv := map[int]string{}
			for _, f := range files {
				pid, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "args-"))
				data, err := os.ReadFile(f)
				if err != nil {
					r.t.Fatal(err)
				}
				argv[pid] = string(data)
			}
			return argv
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d agent starts seen, want %d; logs:\n%s", len(files), n, r.logs)
		}
	}
}

// pidOf returns the pid of the agent whose argv has work dir node-i.
func (r *fakeRun) pidOf(started map[int]string, i int) int {
	r.t.Helper()
	for pid, argv := range started {
		if strings.Contains(argv, filepath.Join(r.work, "node-"+strconv.Itoa(i))+"\n") {
			return pid
		}
	}
	r.t.Fatalf("no agent of node-%d in %v", i, started)
	return 0
}

// stop closes the provider and checks that none of the agents' pids is
// left.
func (r *fakeRun) stop(pids map[int]string) {
	r.t.Helper()
	if err := r.p.Close(); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
	for pid := range pids {
		gone(r.t, pid)
	}
}

func gone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("agent %d still exists (kill -0: %v)", pid, err)
	}
}

func TestCreateStartsAgentsAndCloseStopsThem(t *testing.T) {
	work := t.TempDir()
	r := startFake(t, Config{Slots: 3, WorkDir: work, LogLevel: "debug"})
	nodes := r.create(provider.CreateRequest{Count: 2})
	started := r.starts(2)
	var argvs [][]string
	for _, argv := range started {
		argvs = append(argvs, strings.Fields(argv))
	}
	for i := 1; i <= 2; i++ {
		want := []string{"--coordinator", "127.0.0.1:7070", "--work-dir", filepath.Join(work, "node-"+strconv.Itoa(i)), "--slots", "3", "--log-level", "debug"}
		found := false
		for _, argv := range argvs {
			if cmp.Equal(want, argv) {
				found = true
			}
		}
		if !found {
			t.Errorf("no agent ran with %v; got %v", want, argvs)
		}
		if st, err := os.Stat(filepath.Join(work, "node-"+strconv.Itoa(i))); err != nil || !st.IsDir() {
			t.Errorf("work dir of node %d missing: %v", i, err)
		}
	}
	if diff := cmp.Diff([]string{"node-1", "node-2"}, []string{nodes[0].ID, nodes[1].ID}); diff != "" {
		t.Errorf("node ids (-want +got):\n%s", diff)
	}
	logs := r.logs
	waitLogs := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "warning on stderr") || !strings.Contains(logs.String(), "hello from the fake agent") {
		if time.Now().After(waitLogs) {
			t.Fatalf("agent output not forwarded; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "coordinator.agent-1") {
		t.Errorf("agent output is not under the agent-1 logger:\n%s", logs)
	}

	r.stop(started)
	if !strings.Contains(logs.String(), "stopping") {
		t.Errorf("agents were not stopped with SIGTERM:\n%s", logs)
	}
	for i := 1; i <= 2; i++ {
		if _, err := os.Stat(filepath.Join(work, "node-"+strconv.Itoa(i))); err != nil {
			t.Errorf("Close removed the work dir of node %d: %v", i, err)
		}
	}
	if _, err := r.p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 1}); !errors.Is(err, provider.ErrNotStarted) {
		t.Errorf("Create after Close = %v, want ErrNotStarted", err)
	}
}

func TestMissingAgentBinarySaysMakeBuild(t *testing.T) {
	p, err := New(Config{AgentBinary: filepath.Join(t.TempDir(), "cloudml-agent"), WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Start(t.Context(), provider.Target{Addr: "127.0.0.1:1", MintToken: fakeMint})
	if !errors.Is(err, ErrAgentNotFound) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Start with a missing agent = %v, want ErrAgentNotFound mentioning make build", err)
	}
	if _, err := p.Create(t.Context(), provider.CreateRequest{Request: "r", Count: 1}); !errors.Is(err, provider.ErrNotStarted) {
		t.Errorf("Create before Start = %v, want ErrNotStarted", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Slots: -1}, {Restart: RestartPolicy{Min: -1}}, {Restart: RestartPolicy{Min: time.Minute, Max: time.Second}}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	c := Config{}
	if err := c.Validate(); err != nil || c.LogLevel != "info" || c.Restart != DefaultRestartPolicy() {
		t.Errorf("Validate default: %v, log level %q, restart %+v", err, c.LogLevel, c.Restart)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a work dir succeeded")
	}
}

// An agent that dies is started again with the same command, as systemd
// restarts it on a droplet, after the configured delay; closing the
// provider stops the new one.
func TestAnAgentThatDiesIsRestarted(t *testing.T) {
	r := startFake(t, Config{Restart: RestartPolicy{Min: 20 * time.Millisecond}})
	r.create(provider.CreateRequest{Count: 1})
	var first int
	var argv string
	for first, argv = range r.starts(1) {
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	both := r.starts(2)
	for pid, again := range both {
		if pid != first && again != argv {
			t.Errorf("restarted with\n%s\nwant the same argv\n%s", again, argv)
		}
	}
	if !regexp.MustCompile(`agent exited; restarting it: .* in=20ms\n`).MatchString(r.logs.String()) {
		t.Errorf("the restart is not logged:\n%s", r.logs)
	}
	if got := r.mints.got(); len(got) != 2 {
		t.Errorf("join tokens minted for two starts of one agent: %v, want one each", got)
	}
	r.stop(both)
}

func TestLocalKeepsTheContract(t *testing.T) {
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	providertest.Contract(t, func(t *testing.T, target provider.Target) provider.Provider {
		p, err := New(Config{AgentBinary: script, WorkDir: t.TempDir(), Env: []string{"FAKE_AGENT_OUT=" + t.TempDir()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(t.Context(), target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	})
}

// Create, List, Delete and Reconcile act on the agent processes: each node
// has its own token and slots, a deleted node's agent and work dir are
// gone, and a stray's agent is stopped.
func TestNodesAreAgentProcesses(t *testing.T) {
	r := startFake(t, Config{Slots: 3})
	ctx := t.Context()
	if _, err := r.p.Create(ctx, provider.CreateRequest{Request: "r", Count: 1, Size: "s-2vcpu-4gb"}); !errors.Is(err, provider.ErrInvalid) {
		t.Errorf("Create with a size = %v, want ErrInvalid", err)
	}
	r.create(provider.CreateRequest{Request: "first", Count: 2, Pool: "small"})
	r.create(provider.CreateRequest{Request: "second", Count: 1, Pool: "big", Slots: 5})
	started := r.starts(3)
	if diff := cmp.Diff([]string{"local node-1/3", "local node-2/3", "local node-3/5"}, r.mints.got()); diff != "" {
		t.Errorf("join tokens minted, label/slots (-want +got):\n%s", diff)
	}
	if argv := started[r.pidOf(started, 3)]; !strings.Contains(argv, "--slots\n5\n") {
		t.Errorf("node-3 (slots 5) ran with\n%s", argv)
	}
	for pid := range started {
		tok, err := os.ReadFile(filepath.Join(r.out, "token-"+strconv.Itoa(pid)))
		if err != nil || !strings.HasPrefix(string(tok), "CMLTKN-1-test-local node-") {
			t.Errorf("agent %d's join token = %q, %v", pid, tok, err)
		}
	}

	var nodes []provider.Node
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if nodes, err = r.p.List(ctx); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(nodes, func(n provider.Node) bool { return n.State != provider.StateRunning }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes not all running: %+v", nodes)
		}
	}
	type short struct{ ID, Pool, Request, IP string }
	var got []short
	for _, n := range nodes {
		got = append(got, short{n.ID, n.Pool, n.Request, n.PrivateIP.String()})
	}
	want := []short{{"node-1", "small", "first", "127.0.0.1"}, {"node-2", "small", "first", "127.0.0.1"}, {"node-3", "big", "second", "127.0.0.1"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	if err := r.p.Delete(ctx, []string{"node-1", "node-9"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	gone(t, r.pidOf(started, 1))
	if _, err := os.Stat(filepath.Join(r.work, "node-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir of a deleted node: %v, want it removed", err)
	}
	rep, err := r.p.Reconcile(ctx, provider.ReconcileRequest{Known: []string{"node-1", "node-2"}, DeleteStrays: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]string{{"node-3"}, {"node-1"}}, [][]string{rep.Deleted, rep.Vanished}); diff != "" {
		t.Errorf("Reconcile: deleted, vanished (-want +got):\n%s", diff)
	}
	gone(t, r.pidOf(started, 3))
	if again := r.create(provider.CreateRequest{Count: 1}); again[0].ID != "node-4" {
		t.Errorf("a node created after deletes is %s, want node-4 (ids are not reused)", again[0].ID)
	}
}

// fakeMint stands for the coordinator's MintToken.
func fakeMint(label string, slots int) (string, error) { return "CMLTKN-1-test-" + label, nil }
