package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// ErrUnavailable is wrapped by Check's error: this machine cannot host a
// namespace cluster.
var ErrUnavailable = errors.New("network namespace clusters are unavailable")

// requirement is a program a cluster needs and the package that has it.
type requirement struct {
	program string
	pkg     string
}

var requirements = []requirement{
	{"ip", "iproute2"},
	{"nsenter", "util-linux"},
	{"unshare", "util-linux"},
	{"iptables", "iptables"},
	{"dockerd", "docker.io"},
	{"containerd", "docker.io"},
	{"runc", "docker.io"},
}

// Check reports whether this machine can host a cluster: root, and ip,
// nsenter, unshare, iptables, dockerd, containerd and runc on PATH. Its error lists
// everything missing and how to install it.
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run as root, e.g. with sudo)")
	}
	pkgs := map[string]bool{}
	var order []string
	for _, r := range requirements {
		if _, err := exec.LookPath(r.program); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", r.program, r.pkg))
			if !pkgs[r.pkg] {
				pkgs[r.pkg] = true
				order = append(order, r.pkg)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	msg := "missing " + strings.Join(missing, ", ")
	if len(order) > 0 {
		msg += "; install with: apt-get install " + strings.Join(order, " ")
	}
	return fmt.Errorf("%w: %s", ErrUnavailable, msg)
}
