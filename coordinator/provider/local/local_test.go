package local

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeRun is Provider.Run with testdata/fake-agent.sh as the agent; each
// agent records its argv in out/args-PID.
type fakeRun struct {
	t      *testing.T
	out    string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startFake(t *testing.T, cfg Config) *fakeRun {
	t.Helper()
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRun{t: t, out: t.TempDir(), logs: &syncBuffer{}, done: make(chan error, 1)}
	cfg.AgentBinary = script
	cfg.Env = []string{"FAKE_AGENT_OUT=" + r.out}
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: r.logs, Level: hclog.Info})
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	go func() { r.done <- p.Run(ctx, Target{Addr: "127.0.0.1:7070", MintToken: fakeMint}) }()
	return r
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

// stop cancels Run, waits for it to return nil, and checks that none of
// the agents' pids is left.
func (r *fakeRun) stop(pids map[int]string) {
	r.t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			r.t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		r.t.Fatal("Run did not return after cancel")
	}
	for pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			r.t.Errorf("agent %d still exists after Run returned (kill -0: %v)", pid, err)
		}
	}
}

func TestRunStartsAgentsAndStopsThem(t *testing.T) {
	work := t.TempDir()
	r := startFake(t, Config{Nodes: 2, Slots: 3, WorkDir: work, LogLevel: "debug"})
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
}

func TestMissingAgentBinarySaysMakeBuild(t *testing.T) {
	p, err := New(Config{Nodes: 1, AgentBinary: filepath.Join(t.TempDir(), "cloudml-agent"), WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), Target{Addr: "127.0.0.1:1", MintToken: fakeMint})
	if !errors.Is(err, ErrAgentNotFound) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("Run with a missing agent = %v, want ErrAgentNotFound mentioning make build", err)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Nodes: 0}, {Nodes: 1, Slots: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", c)
		}
	}
	c := Config{Nodes: 1}
	if err := c.Validate(); err != nil || c.LogLevel != "info" {
		t.Errorf("Validate default: %v, log level %q", err, c.LogLevel)
	}
}

// An agent that dies is started again with the same command, as systemd
// restarts it on a droplet; stopping the provider stops the new one.
func TestRunRestartsAnAgentThatDies(t *testing.T) {
	r := startFake(t, Config{Nodes: 1, WorkDir: t.TempDir()})
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
	if !strings.Contains(r.logs.String(), "agent exited; restarting it") {
		t.Errorf("the restart is not logged:\n%s", r.logs)
	}
	r.stop(both)
}

// fakeMint stands for the coordinator's MintToken.
func fakeMint(label string, slots int) (string, error) { return "CMLTKN-1-test-" + label, nil }
