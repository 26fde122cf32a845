package netnsboot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudml/cloudml/internal/netns"
)

// Paths on a droplet.
const (
	// dockerSock is where a droplet's Docker socket is (/var/run is a
	// link to /run): the node's dockerd is bound there.
	dockerSock = "/run/docker.sock"
	// unitDir holds the units the stand-in starts.
	unitDir = "/etc/systemd/system"
)

// own are the directories a droplet starts with empty (a bind mount of
// one of its own, over the overlay), whatever the host has there.
var own = []string{"/etc/cloudml", "/usr/local/lib/cloudml", "/var/lib/cloudml"}

// systemPath is the PATH of the droplet's units, as systemd's.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// machine is one booted droplet on one node of the pool.
type machine struct {
	b          *Booter
	log        hclog.Logger
	id         int
	name       string
	key        string // names its overlays (mountSource): the droplet id, or the node's preparation
	node       int
	daemon     int // the node's dockerd: its mount, UTS and network namespaces are the droplet's
	dockerHost string
	dir        string // WorkDir/droplets/<id>
	private    netip.Addr
	public     netip.Prefix

	ctx     context.Context // ends cloud-init and the units at halt
	cancel  context.CancelFunc
	ciDone  chan struct{} // closed when cloud-init ended (or never ran)
	ciOut   *lineWriter
	srv     *http.Server // the systemctl stand-in's endpoint
	srvDone chan struct{}
	images  map[string]bool // the node's images before the boot
	booted  time.Time

	haltOnce sync.Once // halt runs once; a second caller waits for it
	haltErr  error

	mu      sync.Mutex // protects units, ciState, ciErr, enabled
	units   map[string]*service
	enabled map[string]bool
	ciState string // "pending", "running", "done", "failed"
	ciErr   error
}

// command runs argv in the droplet: in its node's network namespace and
// the mount and UTS namespaces it shares with the node's dockerd, with
// exactly env as its environment, from /.
func (m *machine) command(env []string, argv ...string) *exec.Cmd {
	args := []string{"--target", strconv.Itoa(m.daemon), "--mount", "--uts", "--net", "--wd=/", "--", "env", "-i"}
	args = append(append(args, env...), argv...)
	cmd := exec.Command("nsenter", args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + systemPath}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// start starts a command of m (see command) so that a dead test takes its
// droplets along (netns.StartTied), and returns cmd.Wait's result.
func start(cmd *exec.Cmd) (<-chan error, error) {
	return netns.StartTied(cmd, syscall.SIGTERM)
}

// sh runs a script in the droplet with args as $0, $1, ... and returns
// its combined output.
func (m *machine) sh(ctx context.Context, script string, args ...string) (string, error) {
	cmd := m.command([]string{"PATH=" + systemPath}, append([]string{"sh", "-euc", script}, args...)...)
	out, err := runCtx(ctx, cmd)
	if err != nil {
		return out, fmt.Errorf("droplet %d: %w: %s", m.id, err, strings.TrimSpace(out))
	}
	return out, nil
}

// runCtx runs cmd, killing it if ctx ends first, and returns its
// combined output.
func runCtx(ctx context.Context, cmd *exec.Cmd) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	done, err := start(cmd)
	if err != nil {
		return "", err
	}
	select {
	case err := <-done:
		return out.String(), err
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return out.String(), ctx.Err()
	}
}

// setup makes the node the droplet's machine: its own directories and
// files over the host's, its Docker socket, hostname and public address,
// and the systemctl stand-in.
func (m *machine) setup(ctx context.Context) error {
	if mps := m.mounts(); len(mps) > 0 {
		return fmt.Errorf("node %d still has a droplet's mounts: %s", m.node, strings.Join(mps, ", "))
	}
	dirs := []string{"bin"}
	for _, d := range overlaid {
		dirs = append(dirs, m.layer(d, "upper"), m.layer(d, "work"))
	}
	for _, d := range own {
		dirs = append(dirs, m.ownDir(d))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(m.dir, d), 0o755); err != nil {
			return err
		}
	}
	sock := filepath.Join(m.dir, "systemctl.sock")
	if len(sock) > 107 {
		return fmt.Errorf("socket path %s is longer than a unix socket path may be: use a shorter work dir", sock)
	}
	for name, script := range map[string]string{"systemctl": systemctlScript(sock), "apt-get": aptScript} {
		if err := os.WriteFile(filepath.Join(m.dir, "bin", name), []byte(script), 0o755); err != nil {
			return err
		}
	}
	if err := m.serveSystemctl(sock); err != nil {
		return err
	}
	var s strings.Builder
	args := []string{}
	arg := func(v string) string { args = append(args, v); return `"${` + strconv.Itoa(len(args)) + `}"` }
	fmt.Fprintf(&s, "[ -e %s ] || { echo 'no %s to bind the Docker socket of the node on' >&2; exit 1; }\n", dockerSock, dockerSock)
	for _, d := range overlaid {
		opts := "lowerdir=" + d + ",upperdir=" + filepath.Join(m.dir, m.layer(d, "upper")) + ",workdir=" + filepath.Join(m.dir, m.layer(d, "work"))
		fmt.Fprintf(&s, "mount -t overlay %s -o %s %s\n", arg(m.mountSource()), arg(opts), arg(d))
	}
	for _, d := range own {
		fmt.Fprintf(&s, "mkdir -p %s && mount --bind %s %s\n", arg(d), arg(filepath.Join(m.dir, m.ownDir(d))), arg(d))
	}
	fmt.Fprintf(&s, "mount --bind %s %s\n", arg(strings.TrimPrefix(m.dockerHost, "unix://")), arg(dockerSock))
	fmt.Fprintf(&s, "echo %s > /proc/sys/kernel/hostname\n", arg(m.name))
	fmt.Fprintf(&s, "ip addr add %s dev eth0\n", arg(m.public.String()))
	if _, err := m.sh(ctx, s.String(), append([]string{"setup"}, args...)...); err != nil {
		return fmt.Errorf("set up node %d: %w", m.node, err)
	}
	return nil
}

// layer is the directory below m.dir of an overlay's layer.
func (m *machine) layer(dir, which string) string {
	return filepath.Join("overlay", strings.ReplaceAll(strings.Trim(dir, "/"), "/", "-"), which)
}

// ownDir is the directory below m.dir bound over dir.
func (m *machine) ownDir(dir string) string {
	return filepath.Join("own", strings.ReplaceAll(strings.Trim(dir, "/"), "/", "-"))
}

// mountSource names the droplet's overlays in mountinfo.
func (m *machine) mountSource() string { return "cloudml-droplet-" + m.key }

// targets are the droplet's mount points, deepest last.
func targets() []string {
	return append(append(append([]string(nil), overlaid...), own...), dockerSock)
}

// mounts lists the droplet mounts in the node's mount namespace (of this
// or an earlier droplet): mount points among targets.
func (m *machine) mounts() []string {
	f, err := os.Open("/proc/" + strconv.Itoa(m.daemon) + "/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && slices.Contains(targets(), fields[4]) {
			out = append(out, fields[4])
		}
	}
	return out
}

// teardown undoes setup: the mounts (deepest first), the address and the
// hostname, the stand-in, and the droplet's files.
func (m *machine) teardown(ctx context.Context) error {
	var errs []error
	if m.srv != nil {
		m.srv.Close()
		<-m.srvDone
	}
	var s strings.Builder
	s.WriteString("rc=0\n")
	ts := targets()
	for i := len(ts) - 1; i >= 0; i-- {
		fmt.Fprintf(&s, "if mountpoint -q %[1]s; then umount -l %[1]s || rc=1; fi\n", ts[i])
	}
	fmt.Fprintf(&s, "ip addr del \"$1\" dev eth0 2>/dev/null || true\n")
	fmt.Fprintf(&s, "echo \"$2\" > /proc/sys/kernel/hostname\n")
	s.WriteString("exit $rc\n")
	if _, err := m.sh(ctx, s.String(), "teardown", m.public.String(), m.b.nodes[m.node].Name); err != nil {
		errs = append(errs, fmt.Errorf("undo node %d's mounts: %w", m.node, err))
	}
	if left := m.mounts(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("node %d keeps mounts of droplet %d: %s", m.node, m.id, strings.Join(left, ", ")))
	}
	if err := os.RemoveAll(m.dir); err != nil {
		errs = append(errs, err)
	}
	if link := filepath.Join(m.b.cfg.WorkDir, "droplets", strconv.Itoa(m.id)); m.id != 0 && link != m.dir {
		if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err) // the link attach made to a prepared machine's directory
		}
	}
	return errors.Join(errs...)
}

// serveSystemctl answers the systemctl stand-in on a unix socket at path.
func (m *machine) serveSystemctl(path string) error {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("systemctl stand-in: %w", err)
	}
	m.srv = &http.Server{Handler: http.HandlerFunc(m.systemctl), ReadHeaderTimeout: 10 * time.Second}
	m.srvDone = make(chan struct{})
	go func() {
		defer close(m.srvDone)
		m.srv.Serve(ln)
	}()
	return nil
}
