package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
)

var (
	// ErrDockerdStart means a node's dockerd exited or did not answer in
	// time.
	ErrDockerdStart = errors.New("dockerd did not start")
	// ErrDockerdStopped means a node's dockerd is not running.
	ErrDockerdStopped = errors.New("dockerd is not running")
)

// daemon is a running dockerd.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result, set before exited is closed
}

// DockerdArgs returns the dockerd arguments of node i of a cluster named
// prefix whose node directory is dir (see doc.go for why each is needed).
func DockerdArgs(prefix string, i int, dir string) []string {
	ns := nsName(prefix, i)
	return []string{
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", execRoot(prefix, i),
		"--pidfile", filepath.Join(execRoot(prefix, i), "docker.pid"),
		"-H", "unix://" + socketPath(prefix, i),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--containerd-namespace", ns,
		"--containerd-plugins-namespace", ns + "-plugins",
	}
}

// DockerClient returns a Docker API client for node's daemon; close it.
func (c *Cluster) DockerClient(node int) (*client.Client, error) {
	if node < 0 || node >= len(c.nodes) {
		return nil, fmt.Errorf("%w: %d", ErrNoSuchNode, node)
	}
	if !c.cfg.Dockerd {
		return nil, ErrNoDockerd
	}
	return client.NewClientWithOpts(client.WithHost(c.nodes[node].DockerHost), client.WithAPIVersionNegotiation())
}

// startAll starts every node's dockerd in parallel and waits until each
// answers.
func (c *Cluster) startAll(ctx context.Context) error {
	start := time.Now()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.StartDocker(ctx, i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.log.Info("dockerd ready on every node", "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// StartDocker starts node's dockerd (again, after StopDocker) and waits
// until it answers. Starting a running daemon is a no-op.
func (c *Cluster) StartDocker(ctx context.Context, node int) error {
	if node < 0 || node >= len(c.nodes) {
		return fmt.Errorf("%w: %d", ErrNoSuchNode, node)
	}
	if !c.cfg.Dockerd {
		return ErrNoDockerd
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if d := c.daemons[node]; d != nil {
		select {
		case <-d.exited: // it died on its own: start a new one
			c.log.Warn("dockerd had exited; starting it again", "node", node, "error", d.err)
		default:
			c.mu.Unlock()
			return nil
		}
	}
	d, err := c.spawn(node)
	if err == nil {
		c.daemons[node] = d
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := c.waitReady(ctx, node, d); err != nil {
		return fmt.Errorf("node %d: %w", node, err)
	}
	return nil
}

// spawn starts dockerd inside node's namespace, its output going to
// Dir/dockerd.log.
func (c *Cluster) spawn(node int) (*daemon, error) {
	n := c.nodes[node]
	for _, dir := range []string{filepath.Join(n.Dir, "data"), execRoot(c.cfg.Name, node)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("node %d: %w", node, err)
		}
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		return nil, fmt.Errorf("node %d: %w", node, err)
	}
	logf, err := os.OpenFile(filepath.Join(n.Dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", node, err)
	}
	defer logf.Close() // the child holds its own copy
	// A UTS namespace of its own gives each daemon (and so each swarm
	// node) the node's name as hostname.
	args := []string{"--net=" + n.NetnsPath, "--", "unshare", "--uts"}
	if c.cfg.PrivateMounts {
		args = append(args, "--mount", "--propagation", "private")
	}
	args = append(append(args, "--", "sh", "-c", `echo "$0" > /proc/sys/kernel/hostname && exec "$@"`, n.Name, "dockerd"),
		DockerdArgs(c.cfg.Name, node, n.Dir)...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary that dies takes its daemons down with it; Cleanup
	// removes whatever that leaves.
	waited, err := StartTied(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("node %d: start dockerd: %w", node, err)
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	go func() {
		d.err = <-waited
		close(d.exited)
	}()
	c.log.Debug("dockerd started", "node", node, "pid", cmd.Process.Pid)
	return d, nil
}

// DockerPID returns the process id of node's running dockerd (nsenter,
// unshare and sh exec it in turn, so it is the process Create started):
// /proc/PID/ns/ names its namespaces, with Config.PrivateMounts its own
// mount namespace among them. ErrDockerdStopped when it is not running.
func (c *Cluster) DockerPID(node int) (int, error) {
	if node < 0 || node >= len(c.nodes) {
		return 0, fmt.Errorf("%w: %d", ErrNoSuchNode, node)
	}
	if !c.cfg.Dockerd {
		return 0, ErrNoDockerd
	}
	c.mu.Lock()
	d := c.daemons[node]
	c.mu.Unlock()
	if d == nil {
		return 0, fmt.Errorf("node %d: %w", node, ErrDockerdStopped)
	}
	select {
	case <-d.exited:
		return 0, fmt.Errorf("node %d: %w (it exited: %v)", node, ErrDockerdStopped, d.err)
	default:
	}
	return d.cmd.Process.Pid, nil
}

// waitReady polls node's daemon until it answers Ping.
func (c *Cluster) waitReady(ctx context.Context, node int, d *daemon) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	cli, err := c.DockerClient(node)
	if err != nil {
		return err
	}
	defer cli.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Ping(pctx)
		pcancel()
		if err == nil {
			c.log.Debug("dockerd ready", "node", node, "elapsed", time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%w: dockerd exited (%v); log tail:\n%s", ErrDockerdStart, d.err, c.logTail(node))
		case <-ctx.Done():
			return fmt.Errorf("%w: no answer within %s (%v); log tail:\n%s", ErrDockerdStart, c.cfg.StartTimeout, err, c.logTail(node))
		case <-tick.C:
		}
	}
}

// logTail returns the last lines of node's dockerd log.
func (c *Cluster) logTail(node int) string {
	data, _ := os.ReadFile(filepath.Join(c.nodes[node].Dir, "dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// StopDocker stops node's dockerd like `systemctl stop docker` would
// (SIGTERM; SIGKILL after StopTimeout), then kills what it leaves of
// containerd and its shims and unmounts their leftovers. Processes started
// with Command keep running. Stopping a stopped daemon is a no-op.
func (c *Cluster) StopDocker(node int) error {
	if node < 0 || node >= len(c.nodes) {
		return fmt.Errorf("%w: %d", ErrNoSuchNode, node)
	}
	if !c.cfg.Dockerd {
		return ErrNoDockerd
	}
	c.mu.Lock()
	d := c.daemons[node]
	c.mu.Unlock()
	if d == nil {
		return nil
	}
	return c.stopDaemon(node, d)
}

func (c *Cluster) stopDaemon(node int, d *daemon) error {
	start := time.Now()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(c.cfg.StopTimeout)
	select {
	case <-d.exited:
	case <-timer.C:
		c.log.Warn("dockerd did not stop after SIGTERM; killing it", "node", node, "pid", d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	timer.Stop()
	root := execRoot(c.cfg.Name, node)
	leftovers := selectProcs(Procs(), func(p Proc) bool { return strings.Contains(p.Cmdline, root) })
	var pids []int
	for _, p := range leftovers {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		pids = append(pids, p.PID)
	}
	var errs []error
	if left := WaitGone(pids, 5*time.Second); len(left) > 0 {
		errs = append(errs, fmt.Errorf("node %d: processes of its dockerd survive SIGKILL: %v", node, left))
	}
	errs = append(errs, unmountUnder(root, filepath.Join(c.nodes[node].Dir, "data")))
	c.mu.Lock()
	if c.daemons[node] == d {
		c.daemons[node] = nil
	}
	c.mu.Unlock()
	c.log.Info("dockerd stopped", "node", node, "leftover_processes", len(pids), "elapsed", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// killContainers kills the running containers of every node, so that
// daemons stop without waiting for grace periods. Errors are ignored: the
// daemon shutdown and cleanup that follow are the real teardown.
func (c *Cluster) killContainers(ctx context.Context, daemons []*daemon) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, d := range daemons {
		if d == nil {
			continue
		}
		wg.Go(func() {
			cli, err := c.DockerClient(i)
			if err != nil {
				return
			}
			defer cli.Close()
			list, err := cli.ContainerList(ctx, container.ListOptions{})
			if err != nil {
				return
			}
			for _, ct := range list {
				_ = cli.ContainerKill(ctx, ct.ID, "KILL")
			}
		})
	}
	wg.Wait()
}
