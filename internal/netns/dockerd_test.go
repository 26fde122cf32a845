package netns

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestStopAndStartDocker(t *testing.T) {
	c := sharedCluster(t)
	ctx := t.Context()
	const node = 2
	cli, err := c.DockerClient(node)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("ping before stop: %v", err)
	}
	// A process of the node that is not dockerd's must survive StopDocker.
	sleeper := c.Command(ctx, node, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()

	start := time.Now()
	if err := c.StopDocker(node); err != nil {
		t.Fatalf("StopDocker: %v", err)
	}
	t.Logf("dockerd stopped in %s", time.Since(start).Round(time.Millisecond))
	if _, err := cli.Ping(ctx); err == nil {
		t.Fatal("daemon still answers after StopDocker")
	}
	root := execRoot(c.Name(), node)
	for _, p := range Procs() {
		if p.State != 'Z' && strings.Contains(p.Cmdline, root) {
			t.Errorf("process of the stopped daemon survives: %d %s", p.PID, p.Cmdline)
		}
	}
	if !alive(sleeper.Process.Pid) {
		t.Error("StopDocker killed a process that is not the daemon's")
	}
	if err := c.StopDocker(node); err != nil {
		t.Errorf("second StopDocker: %v", err)
	}

	start = time.Now()
	if err := c.StartDocker(ctx, node); err != nil {
		t.Fatalf("StartDocker: %v", err)
	}
	t.Logf("dockerd restarted in %s", time.Since(start).Round(time.Millisecond))
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
	if err := c.StartDocker(ctx, 99); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("StartDocker(99) = %v, want ErrNoSuchNode", err)
	}
}
