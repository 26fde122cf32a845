package cloudinit

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
)

// serveAgent serves body at /v1/agent/linux-amd64 over HTTPS with a server
// certificate of a fresh CA, as the coordinator's download endpoint does,
// and returns the URL and the CA.
func serveAgent(t *testing.T, body []byte) (url string, caPEM []byte) {
	t.Helper()
	p := testutil.NewPKI(t)
	tlsCfg := p.ServerTLS()
	tlsCfg.NextProtos = []string{"http/1.1"}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/linux-amd64", func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(tls.NewListener(lis, tlsCfg)) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()); <-done })
	return "https://" + lis.Addr().String() + "/v1/agent/linux-amd64", p.CA.CertPEM
}

// machine is a directory standing in for a droplet's root, with a PATH of
// the tools the script needs (extra: sha256sum unless given) and stubs for docker, apt-get and systemctl
// that record their arguments.
type machine struct {
	root, bin, calls string
}

func newMachine(t *testing.T, withDocker bool, extra ...string) *machine {
	t.Helper()
	m := &machine{root: t.TempDir(), bin: t.TempDir()}
	m.calls = filepath.Join(m.bin, "calls")
	if len(extra) == 0 {
		extra = []string{"sha256sum"}
	}
	for _, tool := range append([]string{"sh", "curl", "cut", "mktemp", "chmod", "mv", "rm", "sleep", "uname"}, extra...) {
		p, err := exec.LookPath(tool)
		testutil.NeedSystem(t, tool, err)
		if err := os.Symlink(p, filepath.Join(m.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	stubs := []string{"apt-get", "systemctl"}
	if withDocker {
		stubs = append(stubs, "docker")
	}
	for _, stub := range stubs {
		script := "#!" + filepath.Join(m.bin, "sh") + "\necho \"" + stub + " $*\" >> " + m.calls + "\n"
		if err := os.WriteFile(filepath.Join(m.bin, stub), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{"/usr/local/bin", "/usr/local/lib/cloudml", "/etc/cloudml", "/etc/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(m.root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// boot does what cloud-init does with the user-data: writes its files
// with their modes, then runs runcmd. It returns the commands' output.
func (m *machine) boot(t *testing.T, userData []byte) (string, error) {
	t.Helper()
	cc, err := Parse(userData)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range cc.WriteFiles {
		mode, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil || !strings.HasPrefix(f.Path, m.root+"/") {
			t.Fatalf("file %s mode %q: %v", f.Path, f.Permissions, err)
		}
		if err := os.WriteFile(f.Path, []byte(f.Content), os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	for _, argv := range cc.RunCmd {
		cmd := exec.Command(filepath.Join(m.bin, argv[0]), argv[1:]...)
		cmd.Env = []string{"PATH=" + m.bin}
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return out.String(), err
		}
	}
	return out.String(), nil
}

func (m *machine) called(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(m.calls)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// bootConfig is a config whose agent comes from url, checked against sha,
// for a machine rooted at root.
func bootConfig(t *testing.T, url string, caPEM []byte, sha, root string) Config {
	t.Helper()
	cfg, _ := configFor(t, caPEM)
	cfg.AgentURL, cfg.AgentSHA256, cfg.root = url, sha, root
	return cfg
}

// TestBootstrapInstallsAndStartsTheAgent runs the rendered script with sh
// and the real curl against an HTTPS server of the CA in the user-data:
// the agent lands in place, executable, and the unit is started; docker
// is not installed when the image has it.
func TestBootstrapInstallsAndStartsTheAgent(t *testing.T) {
	for _, hasher := range []string{"sha256sum", "openssl"} {
		t.Run(hasher, func(t *testing.T) {
			testBootstrapInstalls(t, hasher)
		})
	}
}

// testBootstrapInstalls is TestBootstrapInstallsAndStartsTheAgent on a
// machine whose only sha256 tool is hasher.
func testBootstrapInstalls(t *testing.T, hasher string) {
	agent := []byte("#!/bin/sh\necho the agent\n")
	url, caPEM := serveAgent(t, agent)
	m := newMachine(t, true, hasher)
	out, err := m.boot(t, mustRender(t, bootConfig(t, url, caPEM, sum(agent), m.root)).Bytes())
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	path := filepath.Join(m.root, AgentPath)
	got, err := os.ReadFile(path)
	if err != nil || string(got) != string(agent) {
		t.Fatalf("installed agent = %q (%v), want the served binary", got, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o755 {
		t.Errorf("agent mode = %v, want 0755", st.Mode().Perm())
	}
	if st, _ := os.Stat(filepath.Join(m.root, TokenPath)); st.Mode().Perm() != 0o600 {
		t.Errorf("token file mode = %v, want 0600", st.Mode().Perm())
	}
	want := []string{"systemctl enable --now " + UnitName}
	if got := m.called(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands = %q, want %q (no apt-get: the image has docker)", got, want)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(m.root, "/usr/local/bin/.cloudml-agent.*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestBootstrapInstallsDockerWhenMissing: an image without docker gets
// docker.io from apt before the agent.
func TestBootstrapInstallsDockerWhenMissing(t *testing.T) {
	agent := []byte("agent")
	url, caPEM := serveAgent(t, agent)
	m := newMachine(t, false)
	out, err := m.boot(t, mustRender(t, bootConfig(t, url, caPEM, sum(agent), m.root)).Bytes())
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	calls := m.called(t)
	if len(calls) != 3 || !strings.HasSuffix(calls[0], " update") || !strings.HasSuffix(calls[1], "install --no-install-recommends docker.io") {
		t.Errorf("commands = %q, want apt-get update and install docker.io, then systemctl", calls)
	}
}

// TestBootstrapRefusesAnAgentWithAnotherHash: a binary whose sha256 is
// not the user-data's is neither installed nor started.
func TestBootstrapRefusesAnAgentWithAnotherHash(t *testing.T) {
	for _, hasher := range []string{"sha256sum", "openssl"} {
		t.Run(hasher, func(t *testing.T) {
			testBootstrapRefusesHash(t, hasher)
		})
	}
}

// testBootstrapRefusesHash is TestBootstrapRefusesAnAgentWithAnotherHash
// on a machine whose only sha256 tool is hasher.
func testBootstrapRefusesHash(t *testing.T, hasher string) {
	url, caPEM := serveAgent(t, []byte("tampered"))
	m := newMachine(t, true, hasher)
	out, err := m.boot(t, mustRender(t, bootConfig(t, url, caPEM, sum([]byte("agent")), m.root)).Bytes())
	if err == nil || !strings.Contains(out, "refusing the agent") {
		t.Fatalf("bootstrap = %v\n%s\nwant a refusal", err, out)
	}
	if _, err := os.Stat(filepath.Join(m.root, AgentPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an agent was installed (%v)", err)
	}
	if calls := m.called(t); len(calls) != 0 {
		t.Errorf("commands = %q, want none", calls)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(m.root, "/usr/local/bin/.cloudml-agent.*")); len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestBootstrapRefusesAnAgentOfAnotherArchitecture: on an arm64 machine
// the linux-amd64 agent is refused before it is downloaded.
func TestBootstrapRefusesAnAgentOfAnotherArchitecture(t *testing.T) {
	url, caPEM := serveAgent(t, []byte("agent"))
	m := newMachine(t, true)
	uname := filepath.Join(m.bin, "uname")
	os.Remove(uname)
	if err := os.WriteFile(uname, []byte("#!"+filepath.Join(m.bin, "sh")+"\necho aarch64\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := m.boot(t, mustRender(t, bootConfig(t, url, caPEM, sum([]byte("agent")), m.root)).Bytes())
	if err == nil || !strings.Contains(out, "refusing the agent: it is linux-amd64, this machine is linux-arm64") {
		t.Fatalf("bootstrap = %v\n%s\nwant a refusal naming both architectures", err, out)
	}
	if strings.Contains(out, "downloading") {
		t.Errorf("the agent was downloaded before the refusal:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(m.root, AgentPath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an agent was installed (%v)", err)
	}
}

// TestUnitPassesSystemdAnalyze: systemd reads the unit without a warning
// (cloud-init's schema does not look inside the files it writes).
func TestUnitPassesSystemdAnalyze(t *testing.T) {
	bin := testutil.NeedBinary(t, "systemd-analyze")
	root := t.TempDir()
	cfg, _ := testConfig(t)
	cfg.root = root
	cc, err := Parse(mustRender(t, cfg).Bytes())
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(unit, []byte(cc.File(root+UnitPath).Content), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(root, AgentPath)
	if err := os.MkdirAll(filepath.Dir(agent), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "verify", "--man=no", unit).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestBootstrapFoundsTheSwarm: a machine that founds the swarm starts
// docker swarm init advertised at its private address, from the metadata
// service or the config, and still installs and starts the agent; one
// whose address cannot be read leaves the init to its agent.
func TestBootstrapFoundsTheSwarm(t *testing.T) {
	agent := []byte("agent")
	url, caPEM := serveAgent(t, agent)
	meta := http.NewServeMux()
	meta.HandleFunc("GET /metadata/v1/interfaces/private/0/ipv4/address", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("10.116.0.7"))
	})
	metaSrv := httptest.NewServer(meta)
	defer metaSrv.Close()
	cases := []struct {
		name, address, metadata, wantInit string
	}{
		{"from the metadata service", "", metaSrv.URL + "/metadata/v1", "10.116.0.7"},
		{"from the config", "10.116.0.9", metaSrv.URL + "/metadata/v1", "10.116.0.9"},
		{"no address", "", metaSrv.URL + "/none/v1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, true)
			cfg := bootConfig(t, url, caPEM, sum(agent), m.root)
			cfg.FoundSwarm, cfg.Address, cfg.MetadataURL = true, tc.address, tc.metadata
			out, err := m.boot(t, mustRender(t, cfg).Bytes())
			if err != nil {
				t.Fatalf("bootstrap: %v\n%s", err, out)
			}
			calls := m.called(t)
			var inits []string
			for _, c := range calls {
				if strings.HasPrefix(c, "docker swarm init") {
					inits = append(inits, c)
				}
			}
			wantInits := []string{}
			if tc.wantInit != "" {
				wantInits = []string{"docker swarm init --listen-addr 0.0.0.0:2377 --advertise-addr " + tc.wantInit}
			}
			if strings.Join(inits, "\n") != strings.Join(wantInits, "\n") {
				t.Errorf("swarm inits = %q, want %q\n%s", inits, wantInits, out)
			}
			if !slices.Contains(calls, "systemctl enable --now "+UnitName) {
				t.Errorf("commands = %q: the agent was not started", calls)
			}
		})
	}
}
