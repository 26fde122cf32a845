package cli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cloudml/cloudml/coordinator"
	"github.com/cloudml/cloudml/coordinator/provider/local"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
)

// localCoordinator is a coordinator run as `coordinator serve --provider
// local` runs it, on a loopback port, with real cloudml-agent processes
// (process runtime) for machines. Clients reach it with its admin
// credential file, as a user does.
type localCoordinator struct {
	c      *coordinator.Coordinator
	p      *local.Provider
	config string // the admin credential file
}

// buildAgent builds cloudml-agent into a temporary directory.
func buildAgent(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "cloudml-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cloudml-agent")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cloudml-agent: %v\n%s", err, out)
	}
	return bin
}

// startLocal runs a coordinator with the local provider and no machines.
func startLocal(t *testing.T) *localCoordinator {
	t.Helper()
	bin := buildAgent(t)
	dir := t.TempDir()
	log := testutil.Logger(t)
	p, err := local.New(local.Config{AgentBinary: bin, WorkDir: filepath.Join(dir, "nodes"), Slots: 1, LogLevel: "info",
		Env: []string{"DOCKER_HOST="}}, log.Named("local")) // process runtime: no swarm on the host's Docker
	if err != nil {
		t.Fatal(err)
	}
	cfg := coordinator.DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.AdminConfig = filepath.Join(dir, "admin.config")
	cfg.DefaultBucket = "file://" + filepath.Join(dir, "bucket")
	cfg.HeartbeatPeriod = 200 * time.Millisecond
	cfg.NodeDownAfter = 30 * time.Second
	cfg.MachineCheckInterval = 100 * time.Millisecond
	cfg.ReconcileInterval = time.Second
	cfg.Provider = p
	cfg.Logger = log.Named("coordinator")
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("coordinator: %v", err)
		}
		c.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := pki.LoadCredential(cfg.AdminConfig); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the coordinator wrote no admin credential")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &localCoordinator{c: c, p: p, config: cfg.AdminConfig}
}

// run runs the client against it with its admin credential.
func (l *localCoordinator) run(t *testing.T, args ...string) ran {
	t.Helper()
	var out, errb testutil.SyncBuffer
	a := &App{Stdout: &out, Stderr: &errb, WatchInterval: 50 * time.Millisecond,
		Getenv: func(k string) string {
			if k == pki.ConfigEnv {
				return l.config
			}
			return ""
		}}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	code := a.Run(ctx, args)
	return ran{code, out.String(), errb.String()}
}

func (l *localCoordinator) agents(t *testing.T) int {
	t.Helper()
	nodes, err := l.p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(nodes)
}

// TestClusterUpAndDownWithTheLocalProvider runs cluster up --nodes 2 and
// cluster down against a coordinator whose local provider starts real
// agent processes.
func TestClusterUpAndDownWithTheLocalProvider(t *testing.T) {
	testutil.Short(t)
	l := startLocal(t)

	start := time.Now()
	up := l.run(t, "cluster", "up", "--nodes", "2")
	t.Logf("cluster up --nodes 2: exit %d after %s\n%s%s", up.code, time.Since(start).Round(time.Millisecond), up.stdout, up.stderr)
	if up.code != ExitOK || strings.Count(up.stdout, " ready ") != 2 || !strings.Contains(up.stderr, "machine node-1: ready as node-") {
		t.Fatalf("cluster up: exit %d\nstdout:\n%s\nstderr:\n%s", up.code, up.stdout, up.stderr)
	}
	if n := l.agents(t); n != 2 {
		t.Errorf("%d agents run after up, want 2", n)
	}
	nodes := l.run(t, "cluster", "nodes")
	if nodes.code != ExitOK || strings.Count(nodes.stdout, "ready") != 2 {
		t.Errorf("cluster nodes after up:\n%s%s", nodes.stdout, nodes.stderr)
	}

	scale := l.run(t, "cluster", "scale", "--nodes", "1")
	if scale.code != ExitOK || l.agents(t) != 1 || !strings.Contains(scale.stderr, "gone: pool default scaled from 2 to 1 machines") {
		t.Errorf("cluster scale --nodes 1: exit %d, %d agents left\n%s%s", scale.code, l.agents(t), scale.stdout, scale.stderr)
	}

	start = time.Now()
	down := l.run(t, "cluster", "down")
	t.Logf("cluster down: exit %d after %s\n%s%s", down.code, time.Since(start).Round(time.Millisecond), down.stdout, down.stderr)
	if down.code != ExitOK || down.stdout != "1 machine deleted; the provider confirmed each gone\n" || l.agents(t) != 0 {
		t.Errorf("cluster down: exit %d, %d agents left\nstdout:\n%s\nstderr:\n%s", down.code, l.agents(t), down.stdout, down.stderr)
	}
	if left, err := os.ReadDir(filepath.Join(filepath.Dir(l.config), "nodes")); err == nil && len(left) != 0 {
		t.Errorf("work dirs left after down: %v", left)
	}
	if ms := l.run(t, "cluster", "machines"); ms.code != ExitOK || !strings.HasPrefix(ms.stdout, "no machines (provider local)") {
		t.Errorf("cluster machines after down:\n%s%s", ms.stdout, ms.stderr)
	}
}
