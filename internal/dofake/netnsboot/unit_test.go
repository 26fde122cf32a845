package netnsboot

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

// agentUnit is the unit coordinator/cloudinit renders, trimmed of its
// flags.
const agentUnit = `[Unit]
Description=CloudML node agent
Wants=network-online.target docker.service
After=network-online.target docker.service
StartLimitIntervalSec=0

[Service]
ExecStart=/usr/local/bin/cloudml-agent --coordinator 10.0.0.1:7070 --token-file /etc/cloudml/join-token --log-level info
Restart=always
RestartSec=5
RestartPreventExitStatus=3
KillMode=mixed

[Install]
WantedBy=multi-user.target
`

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("cloudml-agent.service", []byte(agentUnit))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/usr/local/bin/cloudml-agent", "--coordinator", "10.0.0.1:7070", "--token-file", "/etc/cloudml/join-token", "--log-level", "info"}
	if diff := cmp.Diff(want, u.execStart); diff != "" {
		t.Errorf("ExecStart (-want +got):\n%s", diff)
	}
	if u.restart != "always" || u.restartDelay != 5*time.Second || !cmp.Equal(u.preventExit, []int{3}) {
		t.Errorf("unit = %+v, want Restart=always, 5s, prevent 3", u)
	}
	for code, want := range map[int]bool{0: true, 1: true, 2: true, 3: false, -1: true} {
		if got := u.restarts(code); got != want {
			t.Errorf("always, exit %d: restarts = %v, want %v", code, got, want)
		}
	}
	onFailure := unit{restart: "on-failure"}
	if onFailure.restarts(0) || !onFailure.restarts(1) || !onFailure.restarts(-1) {
		t.Error("on-failure restarts after exit 0, or not after a failure")
	}
	if (unit{restart: "no"}).restarts(1) {
		t.Error("Restart=no restarts")
	}
	plain, err := parseUnit("x.service", []byte("[Service]\nType=simple\nExecStart=-/bin/true\n"))
	if err != nil || plain.restart != "no" || plain.restartDelay != defaultRestartDelay || !cmp.Equal(plain.execStart, []string{"/bin/true"}) {
		t.Errorf("defaults: %+v, %v", plain, err)
	}
}

func TestParseUnitRefuses(t *testing.T) {
	for name, text := range map[string]string{
		"quotes":        "[Service]\nExecStart=/bin/sh -c 'echo hi'\n",
		"variable":      "[Service]\nExecStart=/bin/echo $HOME\n",
		"specifier":     "[Service]\nExecStart=/bin/echo %n\n",
		"no ExecStart":  "[Service]\nRestart=always\n",
		"relative":      "[Service]\nExecStart=agent\n",
		"elsewhere":     "[Unit]\nExecStart=/bin/true\n",
		"restart":       "[Service]\nExecStart=/bin/true\nRestart=on-abort\n",
		"signal name":   "[Service]\nExecStart=/bin/true\nRestartPreventExitStatus=SIGTERM\n",
		"restart sec":   "[Service]\nExecStart=/bin/true\nRestartSec=soon\n",
		"continued":     "[Service]\nExecStart=/bin/echo \\\n  hi\n",
		"forking":       "[Service]\nType=forking\nExecStart=/bin/true\n",
		"not key=value": "[Service]\nExecStart /bin/true\n",
	} {
		if _, err := parseUnit("x.service", []byte(text)); !errors.Is(err, ErrUnit) {
			t.Errorf("%s: parseUnit = %v, want ErrUnit", name, err)
		}
	}
}

func TestParseSec(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "0.1": 100 * time.Millisecond, "500ms": 500 * time.Millisecond, "2s": 2 * time.Second, "1min": time.Minute} {
		if got, err := parseSec(in); err != nil || got != want {
			t.Errorf("parseSec(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "soon", "1 min"} {
		if _, err := parseSec(in); err == nil {
			t.Errorf("parseSec(%q) accepted", in)
		}
	}
}

type lines []string

func (l *lines) Write(p []byte) (int, error) { *l = append(*l, string(p)); return len(p), nil }

func TestLineWriter(t *testing.T) {
	var out lines
	w := newLineWriter(&console{w: &out}, "d1 unit: ")
	w.Write([]byte("one\ntw"))
	w.Write([]byte("o\r\nthree"))
	if diff := cmp.Diff(lines{"d1 unit: one\n", "d1 unit: two\n"}, out); diff != "" {
		t.Errorf("before flush (-want +got):\n%s", diff)
	}
	w.Flush()
	if got := w.Tail(); !cmp.Equal(got, []string{"one", "two", "three"}) {
		t.Errorf("tail = %q", got)
	}
	for range 2 * tailLines {
		w.Write([]byte("x\n"))
	}
	if got := len(w.Tail()); got != tailLines {
		t.Errorf("tail keeps %d lines, want %d", got, tailLines)
	}
	quiet := newLineWriter(&console{}, "p: ") // no console: only the tail
	quiet.Write([]byte("kept\n"))
	if got := quiet.Tail(); !cmp.Equal(got, []string{"kept"}) {
		t.Errorf("tail without a console = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WorkDir = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	if cfg.Logger == nil || cfg.StopTimeout != 10*time.Second || cfg.Nodes != 3 || !strings.HasPrefix(cfg.Name, "dob") {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	if cc := cfg.clusterConfig(); !cc.PrivateMounts || !cc.Dockerd || cc.WorkDir != filepath.Join(cfg.WorkDir, "docker") {
		t.Errorf("cluster config %+v: want private mounts, daemons, data under WorkDir/docker", cc)
	}
	for name, mod := range map[string]func(*Config){
		"no work dir":       func(c *Config) { c.WorkDir = "" },
		"work dir in /etc":  func(c *Config) { c.WorkDir = "/etc/cloudml-pool" },
		"under /var/lib":    func(c *Config) { c.WorkDir = "/var/lib/pool" },
		"/usr/local itself": func(c *Config) { c.WorkDir = "/usr/local" },
		"too many nodes":    func(c *Config) { c.Nodes = MaxNodes + 1 },
		"negative nodes":    func(c *Config) { c.Nodes = -1 },
		"bad name":          func(c *Config) { c.Name = "Pool_1" },
		"bad subnet":        func(c *Config) { c.Subnet = "10.9.0.0/25" },
	} {
		c := DefaultConfig()
		c.WorkDir = t.TempDir()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestSystemctlStandIn runs the droplet's systemctl script with the real
// curl against the harness's endpoint, for the commands that need no
// droplet: what it passes, what it answers, its exit status.
func TestSystemctlStandIn(t *testing.T) {
	testutil.NeedBinary(t, "curl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &machine{log: testutil.Logger(t), ctx: ctx, units: map[string]*service{}, enabled: map[string]bool{}}
	dir := t.TempDir()
	sock := filepath.Join(dir, "systemctl.sock")
	if err := m.serveSystemctl(sock); err != nil {
		t.Fatal(err)
	}
	defer func() { m.srv.Close(); <-m.srvDone }()
	run := func(args ...string) (string, int) {
		out, err := exec.Command("sh", append([]string{"-c", systemctlScript(sock), "systemctl"}, args...)...).CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee):
			return string(out), ee.ExitCode()
		}
		t.Fatalf("systemctl %v: %v", args, err)
		return "", 0
	}
	for _, c := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"daemon-reload"}, "", 0},
		{[]string{"enable", "cloudml-agent"}, "", 0},
		{[]string{"is-active", "cloudml-agent.service"}, "inactive\n", 3},
		{[]string{"stop", "-q", "other.service"}, "", 0},
		{[]string{"--user", "start", "x"}, "systemctl: option --user is not supported by the stand-in\n", 1},
		{[]string{"mask", "x"}, "systemctl: command \"mask\" is not supported by the stand-in\n", 1},
		{[]string{"start", "../x.service"}, "systemctl: unit \"../x.service\": only service units in /etc/systemd/system are supported\n", 1},
		{[]string{"start"}, "systemctl: start: no unit named\n", 1},
		{nil, "systemctl: no command\n", 1},
	} {
		out, code := run(c.args...)
		if out != c.out || code != c.code {
			t.Errorf("systemctl %q = %q, exit %d; want %q, exit %d", c.args, out, code, c.out, c.code)
		}
	}
	if !m.enabled["cloudml-agent.service"] {
		t.Error("enable was not recorded")
	}
}
