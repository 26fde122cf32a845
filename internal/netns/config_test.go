package netns

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

func TestValidate(t *testing.T) {
	bad := []Config{
		{Name: "", Nodes: 1},
		{Name: "1abc", Nodes: 1},
		{Name: "waytoolongname", Nodes: 1},
		{Name: "Upper", Nodes: 1},
		{Name: "ok", Nodes: 0},
		{Name: "ok", Nodes: MaxNodes + 1},
		{Name: "ok", Nodes: 1, Subnet: "10.0.0.0/25"},
		{Name: "ok", Nodes: 1, Subnet: "fd00::/64"},
		{Name: "ok", Nodes: 1, Subnet: "nonsense"},
		{Name: "ok", Nodes: 1, Dockerd: true},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidConfig", c, err)
		}
	}
	c := Config{Name: "ok", Nodes: 2, Subnet: "10.9.8.7/24", WorkDir: "rel", Dockerd: true}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if c.Subnet != "10.9.8.0/24" || c.WorkDir != wd+"/rel" || c.Logger == nil || c.StartTimeout <= 0 || c.StopTimeout <= 0 {
		t.Errorf("defaults not filled: %+v", c)
	}
}

func TestNames(t *testing.T) {
	p := netip.MustParsePrefix("10.213.4.0/24")
	got := []string{bridgeName("cml1"), hostVeth("cml1", 12), nsName("cml1", 0), nodeAddr(p, 1).String(), nodeAddr(p, 12).String(), socketPath("cml1", 2)}
	want := []string{"cml1br", "cml1h12", "cml1-n0", "10.213.4.1", "10.213.4.12", "/run/cloudml-netns/cml1/n2/docker.sock"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if n := len(hostVeth("abcdefghij", MaxNodes-1)); n > 15 {
		t.Errorf("longest veth name has %d characters, over the kernel's 15", n)
	}
	if n := UniqueName("nt"); !nameRE.MatchString(n) {
		t.Errorf("UniqueName = %q, not a valid name", n)
	}
}

func TestUnescapeMount(t *testing.T) {
	if got, want := unescapeMount(`/tmp/a\040b/c\134d`), `/tmp/a b/c\d`; got != want {
		t.Errorf("unescapeMount = %q, want %q", got, want)
	}
	if got := unescapeMount(`/x\04`); got != `/x\04` {
		t.Errorf("unescapeMount of a short escape = %q", got)
	}
}

func TestCheckListsWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := Check()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Check with an empty PATH = %v, want ErrUnavailable", err)
	}
	for _, want := range []string{"ip (package iproute2)", "dockerd (package docker.io)", "nsenter", "iptables", "apt-get install iproute2 util-linux iptables docker.io"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check error %q does not mention %q", err, want)
		}
	}
	if os.Geteuid() != 0 && !strings.Contains(err.Error(), "root") {
		t.Errorf("Check error %q does not say root is needed", err)
	}
}

func TestCommandOutOfRange(t *testing.T) {
	c := &Cluster{}
	err := c.Command(t.Context(), 3, "true").Run()
	if !errors.Is(err, ErrNoSuchNode) {
		t.Errorf("Command(3) on an empty cluster ran: %v, want ErrNoSuchNode", err)
	}
}

func TestBusyboxRootfs(t *testing.T) {
	data, err := BusyboxRootfs()
	if errors.Is(err, ErrNoBusybox) {
		testutil.NeedSystem(t, "busybox-static", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(data))
	links := map[string]string{}
	var size int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeSymlink:
			links[h.Name] = h.Linkname
		case tar.TypeReg:
			if h.Name == "bin/busybox" {
				size = h.Size
			}
		}
	}
	if size < 100_000 {
		t.Errorf("bin/busybox has %d bytes", size)
	}
	for _, a := range []string{"sh", "echo", "seq", "sleep", "cat", "true", "false", "ls", "mkdir", "env"} {
		if links["bin/"+a] != "busybox" {
			t.Errorf("bin/%s links to %q, want busybox", a, links["bin/"+a])
		}
	}
	if !slices.Contains(busyboxApplets, "hostname") {
		t.Error("hostname applet missing (the swarm test's command uses it)")
	}
}
