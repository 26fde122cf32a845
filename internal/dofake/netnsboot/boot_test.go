package netnsboot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"time"

	"github.com/docker/docker/client"

	"github.com/cloudml/cloudml/internal/dofake/netnsboot"
	"github.com/cloudml/cloudml/internal/testutil"
)

func lookPath(name string) error {
	_, err := exec.LookPath(name)
	return err
}

// smokeUserData is a #! user-data that writes two units and their
// programs and starts them with the droplet's systemctl: "meta" records
// what the metadata service at its default address says of the droplet
// and what Docker and environment the droplet has, then stays up; "flaky" fails once
// (restarted), then exits 3 (not restarted).
const smokeUserData = `#!/bin/sh
set -eu
mkdir -p /etc/cloudml
echo mine > /etc/cloudml/marker
cat > /usr/local/bin/meta <<'SH'
#!/bin/sh
m=http://169.254.169.254/metadata/v1
{
  echo "id=$(curl -sf $m/id)"
  echo "hostname=$(curl -sf $m/hostname)"
  echo "private=$(curl -sf $m/interfaces/private/0/ipv4/address)"
  echo "public=$(curl -sf $m/interfaces/public/0/ipv4/address)"
  echo "docker=$(docker info --format '{{.Name}}')"
  echo "uname=$(uname -n)"
  echo "env=${SMOKE_ENV:-unset}"
} > /var/lib/cloudml/meta.tmp
mv /var/lib/cloudml/meta.tmp /var/lib/cloudml/meta
exec sleep 600
SH
cat > /usr/local/bin/flaky <<'SH'
#!/bin/sh
n=$(cat /var/lib/cloudml/count 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > /var/lib/cloudml/count
echo "flaky run $n"
[ $n -ge 2 ] && exit 3
exit 1
SH
chmod 0755 /usr/local/bin/meta /usr/local/bin/flaky
printf '[Service]\nExecStart=/usr/local/bin/meta\nRestart=always\n' > /etc/systemd/system/meta.service
printf '[Service]\nExecStart=/usr/local/bin/flaky\nRestart=always\nRestartSec=0.1\nRestartPreventExitStatus=3\n' > /etc/systemd/system/flaky.service
systemctl daemon-reload
systemctl enable --now meta.service flaky
[ "$(systemctl is-active meta)" = active ]
if systemctl is-active nothing.service; then exit 1; fi
if apt-get install -y docker.io; then echo "apt-get ran" >&2; exit 1; fi
echo booted
`

// cleanCloudConfig checks that the droplet has none of smokeUserData's
// files, and how its own write_files came out.
const cleanCloudConfig = `#cloud-config
write_files:
  - path: /etc/cloudml/deep/secret
    owner: root:root
    permissions: "0600"
    content: |
      s3cret
  - path: /usr/local/lib/cloudml/run.sh
    owner: root:root
    permissions: "0750"
    content: |
      set -eu
      if [ -e /etc/cloudml/marker ] || [ -e /var/lib/cloudml/meta ]; then echo dirty >&2; exit 1; fi
      { echo clean; stat -c '%a %U:%G' /etc/cloudml/deep/secret /etc/cloudml/deep /usr/local/lib/cloudml/run.sh; } > /var/lib/cloudml/state
runcmd:
  - [sh, /usr/local/lib/cloudml/run.sh]
`

// TestBootRunsUserData boots a droplet on a namespace node: its user-data
// runs there with the droplet's own /etc/cloudml, /usr/local and
// /var/lib/cloudml (the host's stay untouched), its units run under the
// systemctl stand-in with Restart= and RestartPreventExitStatus=, its
// metadata comes from 169.254.169.254 by its source address, its docker
// is the node's daemon named after the droplet, its units get the image's
// DefaultEnvironment; deleting it stops all of
// it and frees the node for the next droplet, which boots clean.
func TestBootRunsUserData(t *testing.T) {
	needSystem(t)
	ctx := context.Background()
	// The nat rule of a pool whose process died (its bridge is gone) is
	// removed by the next pool.
	stale := []string{"PREROUTING", "-i", "dobgonebr", "-d", "169.254.169.254/32", "-p", "tcp", "--dport", "80",
		"-m", "comment", "--comment", "cloudml-netnsboot:dobgone", "-j", "DNAT", "--to-destination", "10.213.250.1:9"}
	if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat", "-I"}, stale...)...).CombinedOutput(); err != nil {
		t.Fatalf("insert a stale rule: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, stale...)...).Run() })
	p := startPool(t, 1)
	if left := netnsboot.Leftovers(ctx, "dobgone", ""); len(left) > 0 {
		t.Errorf("a dead pool's rule survived New: %v", left)
	}
	p.b.SetDefaultEnvironment([]string{"SMOKE_ENV=from-the-image"})
	id := p.create(t, "smoke-1", smokeUserData)
	d := p.active(t, id)
	m, ok := p.b.Machine(id)
	if !ok {
		t.Fatal("no machine for the active droplet")
	}
	priv, _ := d.PrivateIPv4()
	pub, _ := d.PublicIPv4()
	node := p.b.Cluster().Nodes()[m.Node]
	if priv != node.Addr || priv != m.Private.String() || pub != m.Public.String() || pub == priv {
		t.Errorf("droplet addresses private %s public %s; want the node's %s and a second address %s", priv, pub, node.Addr, m.Public)
	}
	var meta string
	metaPath := filepath.Join(p.cfg.WorkDir, "droplets", strconv.Itoa(id), "own", "var-lib-cloudml", "meta")
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "meta unit wrote its findings", func() error {
		m, _ := p.b.Machine(id)
		if m.CloudInit == "failed" {
			t.Fatalf("cloud-init failed: %v\n%s", m.CloudInitError, strings.Join(m.Console, "\n"))
		}
		data, err := os.ReadFile(metaPath)
		meta = string(data)
		return err
	})
	want := fmt.Sprintf("id=%d\nhostname=smoke-1\nprivate=%s\npublic=%s\ndocker=smoke-1\nuname=smoke-1\nenv=from-the-image\n", id, priv, pub)
	if meta != want {
		t.Errorf("the droplet found:\n%s\nwant:\n%s", meta, want)
	}
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "cloud-init done and flaky failed", func() error {
		m, _ := p.b.Machine(id)
		if m.CloudInit != "done" || m.Units["flaky.service"].State != "failed" {
			return fmt.Errorf("cloud-init %s (%v), units %+v", m.CloudInit, m.CloudInitError, m.Units)
		}
		return nil
	})
	m, _ = p.b.Machine(id)
	if u := m.Units["meta.service"]; u.State != "active" || u.Starts != 1 {
		t.Errorf("meta.service = %+v, want active, started once", u)
	}
	if u := m.Units["flaky.service"]; u.Starts != 2 || u.LastExit != "exit status 3" {
		t.Errorf("flaky.service = %+v, want 2 starts, the last ending with exit status 3", u)
	}
	if _, err := os.Stat("/etc/cloudml/marker"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the droplet's /etc/cloudml/marker is on the host (%v)", err)
	}
	for _, f := range []string{"/usr/local/bin/meta", "/etc/systemd/system/meta.service"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the droplet's %s is on the host (%v)", f, err)
		}
	}
	cli, err := client.NewClientWithOpts(client.WithHost(node.DockerHost), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	p.delete(t, id)
	if st := p.b.Stats(); st.Running != 0 || st.Free != 1 || st.Halted != 1 || st.Strays != 0 {
		t.Errorf("after the delete: %+v, want nothing running, the node free, no strays", st)
	}
	if info, err := cli.Info(ctx); err != nil || info.Name != node.Name {
		t.Errorf("node's daemon after the halt: name %q (%v), want %q again", info.Name, err, node.Name)
	}

	// The node boots the next droplet clean: its files are its own. Its
	// #cloud-config's write_files get their modes and owner, and the
	// directories they make 0755.
	id2 := p.create(t, "smoke-2", cleanCloudConfig)
	p.active(t, id2)
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, "second droplet's cloud-init", func() error {
		m, _ := p.b.Machine(id2)
		switch m.CloudInit {
		case "done":
			return nil
		case "failed":
			t.Fatalf("the second droplet found the first one's files: %v\n%s", m.CloudInitError, strings.Join(m.Console, "\n"))
		}
		return errors.New(m.CloudInit)
	})
	state, err := os.ReadFile(filepath.Join(p.cfg.WorkDir, "droplets", strconv.Itoa(id2), "own", "var-lib-cloudml", "state"))
	if want := "clean\n600 root:root\n755 root:root\n750 root:root\n"; string(state) != want {
		t.Errorf("the second droplet found %q (%v), want %q", state, err, want)
	}
	p.delete(t, id2)
	if st := p.s.Stats(); st.Alive != 0 || st.BootFailures != 0 {
		t.Errorf("dofake: %+v, want no droplet alive, no boot failure", st)
	}
}
