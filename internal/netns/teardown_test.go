package netns

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

// runBusy starts a long-running container on node (so that Close meets
// overlay mounts, a containerd shim and a container process) and returns
// its id.
func runBusy(ctx context.Context, c *Cluster, node int) (string, error) {
	if _, err := c.ImportBusybox(ctx); err != nil {
		return "", err
	}
	cli, err := c.DockerClient(node)
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ct, err := cli.ContainerCreate(ctx, &container.Config{Image: BusyboxImage, Cmd: []string{"sleep", "300"}}, &container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		return "", err
	}
	return ct.ID, cli.ContainerStart(ctx, ct.ID, container.StartOptions{})
}

func TestCloseLeavesNothing(t *testing.T) {
	needSystem(t)
	ctx := t.Context()
	cfg := DefaultConfig()
	cfg.Name = UniqueName("nc")
	cfg.Nodes = 2
	cfg.WorkDir = t.TempDir()
	cfg.Logger = testutil.Logger(t)
	c, err := Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := runBusy(ctx, c, 0); err != nil {
		t.Fatal(err)
	}
	sleeper := c.Command(ctx, 1, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan error, 1)
	go func() { sleeperDone <- sleeper.Wait() }()
	if len(mountsUnder(cfg.WorkDir)) == 0 {
		t.Fatal("no mounts under the work dir while a container runs; the leftover check would prove nothing")
	}
	if left := Leftovers(ctx, cfg.Name, cfg.WorkDir); len(left) == 0 {
		t.Fatal("Leftovers reports nothing for a live cluster")
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("closed in %s", time.Since(start).Round(time.Millisecond))
	if left := Leftovers(ctx, cfg.Name, cfg.WorkDir); len(left) > 0 {
		t.Errorf("Close left behind:\n%s", strings.Join(left, "\n"))
	}
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Error("a process started with Command survived Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.StartDocker(ctx, 0); err != ErrClosed {
		t.Errorf("StartDocker after Close = %v, want ErrClosed", err)
	}
}

// crashChildEnv makes the test binary a child that creates a cluster with a
// running container, prints "ready <name> <workdir>" and waits to be killed.
const crashChildEnv = "NETNS_TEST_CRASH_CHILD"

func crashChild() int {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Name = UniqueName("nk")
	cfg.Nodes = 1
	cfg.WorkDir = os.Getenv(crashChildEnv)
	c, err := Create(ctx, cfg)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if _, err := runBusy(ctx, c, 0); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("ready", cfg.Name, cfg.WorkDir)
	select {}
}

func TestCleanupStaleAfterKilledOwner(t *testing.T) {
	needSystem(t)
	ctx := t.Context()
	work := t.TempDir()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+work)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child said %q", line)
	}
	name := f[1]
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if left := Leftovers(ctx, name, work); len(left) == 0 {
		t.Fatal("the killed child left nothing; the test would prove nothing")
	}
	start := time.Now()
	if err := CleanupStale(); err != nil {
		t.Fatalf("CleanupStale: %v", err)
	}
	t.Logf("stale cluster cleaned in %s", time.Since(start).Round(time.Millisecond))
	if left := Leftovers(ctx, name, work); len(left) > 0 {
		t.Errorf("CleanupStale left behind:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(filepath.Join(work, name+"-n0", "data")); !os.IsNotExist(err) {
		t.Errorf("data root still exists: %v", err)
	}
}

func TestCleanupWithoutLeftoversIsNoop(t *testing.T) {
	needSystem(t)
	if err := Cleanup(UniqueName("nz")); err != nil {
		t.Fatalf("Cleanup of a name never used: %v", err)
	}
	if diff := cmp.Diff([]string(nil), Leftovers(t.Context(), UniqueName("nz"), "")); diff != "" {
		t.Errorf("leftovers (-want +got):\n%s", diff)
	}
}
