package netns

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/cloudml/cloudml/internal/testutil"
)

// TestPrivateMounts: with PrivateMounts a node's dockerd has a mount
// namespace of its own; a tmpfs mounted there is invisible on the host
// but is what the daemon's containers get when they bind-mount its path.
func TestPrivateMounts(t *testing.T) {
	needSystem(t)
	ctx := t.Context()
	cfg := DefaultConfig()
	cfg.Name = UniqueName("npm")
	cfg.Nodes = 1
	cfg.WorkDir = t.TempDir()
	cfg.PrivateMounts = true
	cfg.Logger = testutil.Logger(t)
	c, err := Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if left := Leftovers(context.Background(), cfg.Name, cfg.WorkDir); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}()
	pid, err := c.DockerPID(0)
	if err != nil {
		t.Fatal(err)
	}
	if self, daemon := Inode("/proc/self/ns/mnt"), Inode("/proc/"+itoa(pid)+"/ns/mnt"); self == daemon || daemon == 0 {
		t.Fatalf("daemon's mount namespace %d, want one other than this process's %d", daemon, self)
	}
	dir := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := `mount -t tmpfs cloudml-test "$0" && echo inside > "$0/hello"`
	if out, err := exec.CommandContext(ctx, "nsenter", "--target", itoa(pid), "--mount", "--", "sh", "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount in the daemon's namespace: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "hello")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the host sees the file written in the daemon's namespace (%v)", err)
	}
	if got := mountsUnder(dir); len(got) != 0 {
		t.Errorf("host mounts under %s: %v, want none", dir, got)
	}

	if _, err := c.ImportBusybox(ctx); err != nil {
		t.Fatal(err)
	}
	cli, err := c.DockerClient(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ct, err := cli.ContainerCreate(ctx, &container.Config{Image: BusyboxImage, Cmd: []string{"cat", "/mnt/hello"}},
		&container.HostConfig{NetworkMode: "none", Mounts: []mount.Mount{{Type: mount.TypeBind, Source: dir, Target: "/mnt", ReadOnly: true}}}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(context.Background(), ct.ID, container.RemoveOptions{Force: true})
	waitC, errC := cli.ContainerWait(ctx, ct.ID, container.WaitConditionNextExit)
	if err := cli.ContainerStart(ctx, ct.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			t.Errorf("container exit %d", w.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
	rc, err := cli.ContainerLogs(ctx, ct.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "inside\n" {
		t.Errorf("container read %q from the bind mount, want the file of the daemon's namespace", got)
	}

	if err := c.StopDocker(0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DockerPID(0); !errors.Is(err, ErrDockerdStopped) {
		t.Errorf("DockerPID of a stopped daemon = %v, want ErrDockerdStopped", err)
	}
	if _, err := c.DockerPID(5); !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("DockerPID(5) = %v, want ErrNoSuchNode", err)
	}
}
