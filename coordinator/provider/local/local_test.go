package local

import (
	"bytes"
	"context"
	"errors"
	"maps"
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

func TestRunStartsAgentsAndStopsThem(t *testing.T) {
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	work := t.TempDir()
	logs := &syncBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: logs, Level: hclog.Info})
	p, err := New(Config{Nodes: 2, Slots: 3, AgentBinary: script, WorkDir: work, Env: []string{"FAKE_AGENT_OUT=" + out}, LogLevel: "debug"}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, Target{Addr: "127.0.0.1:7070", Token: "tok"}) }()

	var files []string
	deadline := time.Now().Add(15 * time.Second)
	for len(files) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("agents did not start; logs:\n%s", logs)
		}
		files, _ = filepath.Glob(filepath.Join(out, "args-[0-9]*"))
		time.Sleep(10 * time.Millisecond)
	}
	var argvs [][]string
	var pids []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		argvs = append(argvs, strings.Fields(string(data)))
		pid, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "args-"))
		pids = append(pids, pid)
	}
	for i := 1; i <= 2; i++ {
		want := []string{"--coordinator", "127.0.0.1:7070", "--token", "tok", "--work-dir", filepath.Join(work, "node-"+strconv.Itoa(i)), "--slots", "3", "--log-level", "debug"}
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

	stopRun(t, cancel, done, pids...)
	if !strings.Contains(logs.String(), "stopping") {
		t.Errorf("agents were not stopped with SIGTERM:\n%s", logs)
	}
}

func TestMissingAgentBinarySaysMakeBuild(t *testing.T) {
	p, err := New(Config{Nodes: 1, AgentBinary: filepath.Join(t.TempDir(), "cloudml-agent"), WorkDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background(), Target{Addr: "127.0.0.1:1", Token: "t"})
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
	script, err := filepath.Abs("testdata/fake-agent.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	logs := &syncBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Name: "coordinator", Output: logs, Level: hclog.Info})
	p, err := New(Config{Nodes: 1, AgentBinary: script, WorkDir: t.TempDir(), Env: []string{"FAKE_AGENT_OUT=" + out}}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, Target{Addr: "127.0.0.1:7070", Token: "tok"}) }()

	// starts waits for n agents to have recorded their argv, and returns
	// each one's argv by pid.
	starts := func(n int) map[int]string {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			files, _ := filepath.Glob(filepath.Join(out, "args-[0-9]*"))
			if len(files) >= n {
				argv := map[int]string{}
				for _, f := range files {
					pid, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(f), "args-"))
					data, _ := os.ReadFile(f)
					argv[pid] = string(data)
				}
				return argv
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d agent starts seen, want %d; logs:\n%s", len(files), n, logs)
			}
		}
	}
	var first int
	var argv string
	for first, argv = range starts(1) {
	}
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	both := starts(2)
	for pid, again := range both {
		if pid != first && again != argv {
			t.Errorf("restarted with\n%s\nwant the same argv\n%s", again, argv)
		}
	}
	if !strings.Contains(logs.String(), "agent exited; restarting it") {
		t.Errorf("the restart is not logged:\n%s", logs)
	}

	stopRun(t, cancel, done, slices.Collect(maps.Keys(both))...)
}

// stopRun cancels Run, waits for it to return nil, and checks that none of
// the agents' pids is left.
func stopRun(t *testing.T, cancel context.CancelFunc, done <-chan error, pids ...int) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("agent %d still exists after Run returned (kill -0: %v)", pid, err)
		}
	}
}
