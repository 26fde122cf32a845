package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/testutil"
)

func TestHostEnv(t *testing.T) {
	env := []string{
		"PATH=/usr/bin", "HOME=/root", "CLOUDML_JOIN_TOKEN=secret", "LANG=C.UTF-8", "LC_ALL=C", "LC_=x",
		"TZ=UTC", "USER=root", "TMPDIR=/var/tmp", "GOOGLE_APPLICATION_CREDENTIALS=/k.json",
		"HTTPS_PROXY=http://u:p@proxy", "LANGUAGE=en", "PATHX=1",
	}
	want := []string{"PATH=/usr/bin", "LANG=C.UTF-8", "LC_ALL=C", "TZ=UTC", "LANGUAGE=en"}
	if diff := cmp.Diff(want, HostEnv(env)); diff != "" {
		t.Errorf("HostEnv (-want +got):\n%s", diff)
	}
}

func TestLookupUser(t *testing.T) {
	if _, err := LookupUser("nobody"); err != nil {
		testutil.NeedSystem(t, "a nobody account in /etc/passwd", err)
	}
	tests := []struct {
		spec string
		want User
		err  bool
	}{
		{spec: "nobody", want: User{Name: "nobody", UID: 65534, GID: 65534}},
		{spec: "65534", want: User{Name: "nobody", UID: 65534, GID: 65534}},
		{spec: "4242:4343", want: User{Name: "4242", UID: 4242, GID: 4343}},
		{spec: "4242", want: User{Name: "4242", UID: 4242, GID: 4242}},
		{spec: "", err: true},
		{spec: "no-such-user-xyz", err: true},
		{spec: "1:x", err: true},
		{spec: "4294967295", err: true},
	}
	for _, tt := range tests {
		got, err := LookupUser(tt.spec)
		if (err != nil) != tt.err || !errors.Is(err, ErrUser) && tt.err {
			t.Errorf("LookupUser(%q) error = %v, want error %v", tt.spec, err, tt.err)
			continue
		}
		if !tt.err && got != tt.want {
			t.Errorf("LookupUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
		}
	}
}

// agentFiles is an agent's work dir with a secrets dir holding a key and a
// credential, and one attempt's directories, as the agent lays them out.
type agentFiles struct {
	base, work, secrets, other string
	run, output, home, tmp     string
	secretValues               []string
}

func newAgentFiles(t testing.TB, base string) *agentFiles {
	t.Helper()
	tag := make([]byte, 8)
	rand.Read(tag)
	f := &agentFiles{base: base, work: filepath.Join(base, "work")}
	f.secrets = filepath.Join(f.work, "identity")
	f.other = filepath.Join(base, "state.db")
	att := filepath.Join(f.work, "attempts", "job", "0", "1")
	f.run, f.output = filepath.Join(att, "run"), filepath.Join(att, "output")
	f.home, f.tmp = filepath.Join(att, "home"), filepath.Join(att, "tmp")
	key, cred, state := "KEY-"+hex.EncodeToString(tag), "CRED-"+hex.EncodeToString(tag), "STATE-"+hex.EncodeToString(tag)
	f.secretValues = []string{key, cred, state}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(f.work, 0o711))
	must(os.Chmod(f.work, 0o711))
	must(os.Mkdir(f.secrets, 0o700))
	// World-readable on purpose: the mechanism, not the file mode, must
	// keep the task out.
	must(os.WriteFile(filepath.Join(f.secrets, "node.key"), []byte(key), 0o644))
	must(os.WriteFile(filepath.Join(f.secrets, "identity.json"), []byte(`{"node_credential":"`+cred+`"}`), 0o644))
	must(os.WriteFile(f.other, []byte(state), 0o644))
	for _, d := range []string{f.run, f.output, f.home, f.tmp} {
		must(os.MkdirAll(d, 0o755))
	}
	must(os.WriteFile(filepath.Join(f.run, "train.sh"), []byte("echo code-ran\n"), 0o644))
	must(os.Mkdir(filepath.Join(f.work, "cache"), 0o755))
	must(os.WriteFile(filepath.Join(f.work, "cache", "code.m"), []byte("1;\n"), 0o644))
	return f
}

// probe is a task that tries every way to the agent's secrets, and does
// what a task must still be able to do. Each success prints a marker.
const probe = `
for f in "$S/node.key" "$S/identity.json" ${OTHER:+"$OTHER"}; do cat "$f" && echo "READ $f"; done
ls -a "$S" && echo LISTED
tr '\0' '\n' < /proc/$PPID/environ && echo ENVIRON
echo "token=[$CLOUDML_JOIN_TOKEN]"
sh ./train.sh
echo x > "$CLOUDML_OUTPUT_DIR/out.txt" && echo WROTE-OUTPUT
echo x > "$HOME/h" && echo x > "$TMPDIR/t" && echo x > ./here && echo WROTE-HOME-TMP-CWD
ls /usr > /dev/null && echo LISTED-USR
echo x > "$CACHE/x" && echo WROTE-CACHE
cat "$CACHE/code.m" > /dev/null && echo READ-CACHE
`

func runProbe(t *testing.T, r Runtime, f *agentFiles) (stdout, stderr string) {
	t.Helper()
	if os.Getenv("CLOUDML_JOIN_TOKEN") == "" {
		t.Setenv("CLOUDML_JOIN_TOKEN", f.secretValues[0])
	}
	env := append(HostEnv(os.Environ()), "S="+f.secrets, "OTHER="+f.other,
		"CLOUDML_OUTPUT_DIR="+f.output, "HOME="+f.home, "TMPDIR="+f.tmp, "CACHE="+filepath.Join(f.work, "cache"))
	p, err := r.Start(context.Background(), Spec{Command: []string{"sh", "-c", probe}, Dir: f.run, Env: env,
		Writable: []string{f.run, f.output, f.home, f.tmp}})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, _ = collect(t, p)
	t.Logf("task stdout:\n%s\ntask stderr:\n%s", stdout, stderr)
	for _, v := range f.secretValues {
		if strings.Contains(stdout+stderr, v) {
			t.Errorf("the task read the secret %q", v)
		}
	}
	for _, m := range []string{"READ ", "LISTED\n", "ENVIRON", "WROTE-CACHE"} {
		if strings.Contains(stdout, m) {
			t.Errorf("the task printed %q: it got through", m)
		}
	}
	for _, m := range []string{"token=[]", "code-ran", "WROTE-OUTPUT", "WROTE-HOME-TMP-CWD", "LISTED-USR", "READ-CACHE"} {
		if !strings.Contains(stdout, m) {
			t.Errorf("the task did not print %q", m)
		}
	}
	return stdout, stderr
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.NeedSystem(t, "root (to run tasks as another user)", errors.New("not root"))
	}
}

func nobody(t *testing.T) *User {
	t.Helper()
	u, err := LookupUser("nobody")
	testutil.NeedSystem(t, "a nobody account", err)
	return &u
}

// TestTaskAsUserCannotReadSecrets: the agent is root, the task runs as
// nobody in its own mount namespace. The work dir lies under a 0700
// directory (as under the coordinator's state dir), so the namespace must
// also bridge it.
func TestTaskAsUserCannotReadSecrets(t *testing.T) {
	needRoot(t)
	f := newAgentFiles(t, t.TempDir())
	if st, err := os.Stat(filepath.Dir(f.base)); err != nil || st.Mode().Perm()&0o001 != 0 {
		t.Fatalf("test dir %s is open to others (%v, %v); the bridge is not exercised", filepath.Dir(f.base), st.Mode(), err)
	}
	rt, err := NewProcess(ProcessConfig{User: nobody(t), WorkDir: f.work, Secrets: f.secrets})
	if err != nil {
		t.Fatal(err)
	}
	r := rt.(*processRuntime)
	if !r.mountNS {
		testutil.NeedSystem(t, "mount namespaces (CAP_SYS_ADMIN)", errors.New("unshare(CLONE_NEWNS) refused"))
	}
	t.Log(r.Isolation())
	_, stderr := runProbe(t, rt, f)
	if !strings.Contains(stderr, "Permission denied") {
		t.Errorf("stderr does not say Permission denied")
	}
	st, err := os.Stat(filepath.Join(f.output, "out.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != r.cfg.User.UID {
		t.Errorf("the task's output file belongs to uid %d, want %d", uid, r.cfg.User.UID)
	}
}

// TestTaskAsUserWithoutMountNS: with no mount namespaces, file modes alone
// protect the secrets, and a work dir the task user cannot reach is
// refused before anything starts.
func TestTaskAsUserWithoutMountNS(t *testing.T) {
	needRoot(t)
	u := nobody(t)
	open, err := os.MkdirTemp("", "cloudml-isolate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	f := newAgentFiles(t, open)
	// Without the namespace's cover, the files' modes are what protect them.
	for _, p := range []string{filepath.Join(f.secrets, "node.key"), filepath.Join(f.secrets, "identity.json"), f.other} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := &processRuntime{cfg: ProcessConfig{User: u, WorkDir: f.work, Secrets: f.secrets}, mode: modeUser}
	runProbe(t, r, f)

	closed := newAgentFiles(t, t.TempDir())
	r = &processRuntime{cfg: ProcessConfig{User: u, WorkDir: closed.work, Secrets: closed.secrets}, mode: modeUser}
	_, err = r.Start(context.Background(), Spec{Command: []string{"true"}, Dir: closed.run, Env: os.Environ()})
	if !errors.Is(err, ErrIsolation) || !strings.Contains(err.Error(), "cannot reach the work dir") {
		t.Errorf("Start with an unreachable work dir = %v, want ErrIsolation saying so", err)
	}
}

// TestTaskRefusedWhileSecretsOpen: a secrets dir anyone else may enter
// stops every task.
func TestTaskRefusedWhileSecretsOpen(t *testing.T) {
	needRoot(t)
	f := newAgentFiles(t, t.TempDir())
	if err := os.Chmod(f.secrets, 0o755); err != nil {
		t.Fatal(err)
	}
	rt, err := NewProcess(ProcessConfig{User: nobody(t), WorkDir: f.work, Secrets: f.secrets})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rt.Start(context.Background(), Spec{Command: []string{"true"}, Dir: f.run, Env: os.Environ()})
	if !errors.Is(err, ErrIsolation) || !strings.Contains(err.Error(), "mode 0700") {
		t.Errorf("Start = %v, want ErrIsolation asking for mode 0700", err)
	}
}

// TestTaskUnderLandlockCannotReadSecrets: what a non-root agent does.
// The test binary runs again as nobody, as that agent: its own environment
// holds the token, its work dir and secrets are its own, so file modes let
// everything through and only Landlock stands between the task and them.
func TestTaskUnderLandlockCannotReadSecrets(t *testing.T) {
	if base := os.Getenv(asAgentEnv); base != "" {
		landlockAgent(t, base)
		return
	}
	if abi := landlockABI(); abi < 1 {
		testutil.NeedSystem(t, "Landlock (Linux 5.13+ with the landlock LSM)", errors.New("landlock_create_ruleset: no ABI"))
	}
	needRoot(t)
	u := nobody(t)
	dir, err := os.MkdirTemp("", "cloudml-landlock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "runtime.test")
	data, err := os.ReadFile(self)
	if err == nil {
		err = os.WriteFile(bin, data, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "agent")
	for _, p := range []string{dir, base} {
		err := os.MkdirAll(p, 0o755)
		if err == nil {
			err = os.Chmod(p, 0o755)
		}
		if err == nil {
			err = os.Chown(p, int(u.UID), int(u.GID))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tag := make([]byte, 8)
	rand.Read(tag)
	token := "TOKEN-" + hex.EncodeToString(tag)
	cmd := exec.Command(bin, "-test.run=^TestTaskUnderLandlockCannotReadSecrets$", "-test.v", "-test.count=1")
	cmd.Env = append(HostEnv(os.Environ()), asAgentEnv+"="+base, "CLOUDML_JOIN_TOKEN="+token, "CI="+os.Getenv("CI"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	t.Logf("agent as %s:\n%s", u, out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestTaskUnderLandlockCannotReadSecrets") {
		t.Fatalf("the agent run as %s failed: %v", u, err)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Fatal("the agent run skipped")
	}
}

// asAgentEnv names the base dir when the test binary runs as the agent.
const asAgentEnv = "CLOUDML_TEST_LANDLOCK_AGENT"

// landlockAgent is the non-root agent's side of
// TestTaskUnderLandlockCannotReadSecrets.
func landlockAgent(t *testing.T, base string) {
	if os.Geteuid() == 0 {
		t.Fatal("the agent side must not run as root")
	}
	f := newAgentFiles(t, base)
	f.other = "" // the agent's files outside its secrets are not hidden
	rt, err := NewProcess(ProcessConfig{WorkDir: f.work, Secrets: f.secrets})
	if err != nil {
		t.Fatal(err)
	}
	r := rt.(*processRuntime)
	if r.mode != modeLandlock {
		t.Fatalf("mode %d, want Landlock", r.mode)
	}
	t.Log(r.Isolation())
	f.secretValues = append(f.secretValues, os.Getenv("CLOUDML_JOIN_TOKEN"))
	runProbe(t, rt, f)
	if _, err := os.ReadFile(filepath.Join(f.secrets, "node.key")); err != nil {
		t.Errorf("the agent cannot read its own key after starting a task: %v", err)
	}
}

func TestNewProcessRefuses(t *testing.T) {
	if os.Geteuid() == 0 {
		_, err := NewProcess(ProcessConfig{User: &User{Name: "root"}, WorkDir: "/w", Secrets: "/w/identity"})
		if !errors.Is(err, ErrIsolation) {
			t.Errorf("root tasks with secrets: err = %v, want ErrIsolation", err)
		}
		return
	}
	_, err := NewProcess(ProcessConfig{User: &User{Name: "other", UID: uint32(os.Geteuid()) + 1}})
	if !errors.Is(err, ErrUser) {
		t.Errorf("another user without root: err = %v, want ErrUser", err)
	}
}

// BenchmarkStart measures what isolation adds to starting a task (`true`):
// go test -run ^$ -bench Start ./agent/runtime
func BenchmarkStart(b *testing.B) {
	f := newAgentFiles(b, b.TempDir())
	modes := map[string]*processRuntime{"plain": {}}
	if os.Geteuid() == 0 {
		if u, err := LookupUser("nobody"); err == nil {
			modes["user+mountns"] = &processRuntime{cfg: ProcessConfig{User: &u, WorkDir: f.work, Secrets: f.secrets}, mode: modeUser, mountNS: true}
		}
	}
	if abi := landlockABI(); abi > 0 {
		modes["landlock"] = &processRuntime{cfg: ProcessConfig{WorkDir: f.work, Secrets: f.secrets}, mode: modeLandlock, abi: abi}
	}
	for name, r := range modes {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				p, err := r.Start(context.Background(), Spec{Command: []string{"/bin/true"}, Dir: f.run, Env: []string{"PATH=/bin"},
					Writable: []string{f.run, f.output, f.home, f.tmp}})
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, p.Stdout())
				io.Copy(io.Discard, p.Stderr())
				p.Wait()
			}
		})
	}
}
