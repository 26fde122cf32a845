package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/cloudml/cloudml/agent/attempt"
	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fake-gcs-server (buckettoken_test.go) imports opencensus, whose
		// package init starts a stats worker that lives for the whole
		// process.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

type runningAgent struct {
	*Agent
	cancel context.CancelFunc
	errc   chan error
}

func baseConfig(t *testing.T, dial fakeDial, workDir string) Config {
	return Config{
		CoordinatorAddr: "passthrough:///bufnet", JoinToken: dial.token, WorkDir: workDir,
		Logger: testutil.Logger(t), DialOptions: dial.opts, Slots: 2,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		LogFlushInterval: 10 * time.Millisecond, KillGrace: 300 * time.Millisecond, CallTimeout: 5 * time.Second,
		// Every report, STAGING included, however fast staging is
		// (TestStagingReportedOnlyWhenItTakesAWhile tests the delay).
		StagingDelay: -1,
	}
}

func startAgent(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{Agent: a, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and returns its error (once).
func (r *runningAgent) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.errc:
		if ok {
			close(r.errc)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// packCode packs files into an archive in b under code/ and returns its Source.
func packCode(t *testing.T, b bucket.Bucket, files map[string]string) *cloudmlv1.Source {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	dg, err := archive.Pack(context.Background(), dir, &buf)
	if err != nil {
		t.Fatal(err)
	}
	key := "code/" + strings.Replace(dg, ":", "-", 1) + ".tar.gz"
	if err := b.Put(context.Background(), key, &buf, false); err != nil {
		t.Fatal(err)
	}
	return &cloudmlv1.Source{Url: b.URL(key), Digest: dg}
}

func ref(job string, task, att int32) *cloudmlv1.TaskRef {
	return &cloudmlv1.TaskRef{JobId: job, TaskIndex: task, Attempt: att}
}

func TestRegisterOnceAndReuseIdentity(t *testing.T) {
	f, dial := newFakeCoord(t)
	work := t.TempDir()
	r := startAgent(t, baseConfig(t, dial, work))
	f.wait(t, "a session and a heartbeat", func() bool { return len(f.sessionReqs) == 1 && f.heartbeats > 0 })
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	dir := SecretsDir(work)
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, NodeFile): 0o600, filepath.Join(dir, CAFile): 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, st.Mode().Perm(), want)
		}
	}
	id, err := parseIdentity(mustRead(t, filepath.Join(dir, NodeFile)), mustRead(t, filepath.Join(dir, CAFile)))
	if err != nil || id.NodeID != "node-1" || id.leaf.Subject.OrganizationalUnit[0] != "node" {
		t.Errorf("saved identity = %+v (%v), want node-1's node certificate", id, err)
	}
	if got := f.sessionReqs[0]; got.GetSlots() != 2 || got.GetRuntime() != "process" || got.GetMemoryBytes() <= 0 {
		t.Errorf("session request = %v", got)
	}

	cfg := baseConfig(t, dial, work)
	cfg.JoinToken = "" // a restarted agent needs no token
	startAgent(t, cfg)
	f.wait(t, "a second session", func() bool { return len(f.sessionReqs) == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registers != 1 {
		t.Errorf("registers = %d, want 1", f.registers)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestWrongTokenFailsRun(t *testing.T) {
	_, dial := newFakeCoord(t)
	other := testutil.NewPKI(t)
	for name, tc := range map[string]struct{ token, want string }{
		"wrong secret":       {token: pki.NewToken(strings.Split(dial.token, "-")[2]).String(), want: "bad join token"},
		"another CA's token": {token: other.Token(), want: "does not match the join token's fingerprint"},
		"not a token":        {token: "wrong", want: "not a CloudML join token"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(t, dial, t.TempDir())
			cfg.JoinToken = tc.token
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = a.Run(ctx)
			if !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want ErrBadToken saying %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(SecretsDir(cfg.WorkDir), NodeFile)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused registration left a node identity (%v)", err)
			}
		})
	}
}

// TestFingerprintMismatchSendsNothing: an agent whose token pins another CA
// refuses the coordinator during the handshake, before Register is sent.
func TestFingerprintMismatchSendsNothing(t *testing.T) {
	f, dial := newFakeCoord(t)
	cfg := baseConfig(t, dial, t.TempDir())
	cfg.JoinToken = testutil.NewPKI(t).Token()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(t.Context()); !errors.Is(err, ErrBadToken) {
		t.Fatalf("Run = %v, want ErrBadToken", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registers != 0 {
		t.Errorf("the impostor received %d Register calls, want 0", f.registers)
	}
}

// TestRefusedIdentityRegistersAgain also moves an identity an older agent
// kept at the top of the work dir into the secrets dir.
func TestRefusedIdentityRegistersAgain(t *testing.T) {
	f, dial := newFakeCoord(t)
	work := t.TempDir()
	r := startAgent(t, baseConfig(t, dial, work))
	f.wait(t, "a first session", func() bool { return len(f.sessionReqs) == 1 })
	r.stop(t)
	f.mu.Lock()
	f.refuse["node-1"] = true // as a coordinator that removed or forgot it
	f.mu.Unlock()
	startAgent(t, baseConfig(t, dial, work))
	f.wait(t, "a session after registering again", func() bool { return len(f.sessionReqs) == 2 })
	f.mu.Lock()
	if f.registers != 2 {
		t.Errorf("registers = %d, want 2", f.registers)
	}
	f.mu.Unlock()
	id, err := parseIdentity(mustRead(t, filepath.Join(SecretsDir(work), NodeFile)), mustRead(t, filepath.Join(SecretsDir(work), CAFile)))
	if err != nil || id.NodeID != "node-2" {
		t.Errorf("saved identity = %v (%v), want node-2", id.NodeID, err)
	}
}

// TestRenewsCertificateAtHalfLife: with 4 s certificates the agent renews
// after about 2 s, reconnects with the new certificate, and keeps its id.
func TestRenewsCertificateAtHalfLife(t *testing.T) {
	f, dial := newFakeCoord(t)
	f.certTTL = 4 * time.Second
	work := t.TempDir()
	startAgent(t, baseConfig(t, dial, work))
	f.wait(t, "a renewal and a session after it", func() bool { return f.renewals >= 1 && len(f.sessionReqs) >= 2 })
	id, err := parseIdentity(mustRead(t, filepath.Join(SecretsDir(work), NodeFile)), mustRead(t, filepath.Join(SecretsDir(work), CAFile)))
	if err != nil || id.NodeID != "node-1" {
		t.Fatalf("saved identity = %v (%v), want node-1", id, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registers != 1 {
		t.Errorf("registers = %d, want 1 (a renewal keeps the identity)", f.registers)
	}
}

// TestAssignmentEndToEnd runs a real command with code and data staged from
// a file:// bucket and results uploaded to it.
func TestAssignmentEndToEnd(t *testing.T) {
	f, dial := newFakeCoord(t)
	root := t.TempDir()
	b, _, err := bucket.Open(context.Background(), "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	code := packCode(t, b, map[string]string{
		"train.sh": `#!/bin/sh
echo hi
echo err >&2
cat data/iris/iris.csv
echo "{\"loss\": 0.5}" > "$CLOUDML_OUTPUT_DIR/metrics.json"
mkdir -p "$CLOUDML_OUTPUT_DIR/model" && echo weights > "$CLOUDML_OUTPUT_DIR/model/w.txt"
env | grep -E '^(CLOUDML_|EXTRA=)' | sed "s#$CLOUDML_OUTPUT_DIR#OUT#; s#$CLOUDML_DATA_DIR#DATA#" | sort
`,
	})
	if err := b.Put(context.Background(), "data/iris/iris.csv", strings.NewReader("5.1,3.5\n"), true); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	r := startAgent(t, baseConfig(t, dial, work))
	rf := ref("linreg-1", 3, 1)
	f.assign(t, &cloudmlv1.Assignment{
		Ref: rf, TaskCount: 8, Command: []string{"./train.sh"}, Code: code,
		Params: map[string]string{"lr": "0.1", "hidden-units": "64"},
		Env:    map[string]string{"EXTRA": "yes"},
		Data:   map[string]*cloudmlv1.Source{"iris": {Url: b.URL("data/iris")}},
		Output: "file://" + root,
	})
	end := f.waitFinal(t, rf)
	if end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || end.GetExitCode() != 0 {
		t.Fatalf("end report = %v", end)
	}
	wantStates := []cloudmlv1.TaskState{cloudmlv1.TaskState_TASK_STATE_STAGING, cloudmlv1.TaskState_TASK_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED}
	if diff := cmp.Diff(wantStates, f.states(rf)); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"loss": 0.5}, end.GetMetrics()); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	stdout, stderr, batches := f.logText(rf)
	wantOut := `hi
5.1,3.5
CLOUDML_ATTEMPT=1
CLOUDML_DATA_DIR=DATA
CLOUDML_JOB_ID=linreg-1
CLOUDML_OUTPUT_DIR=OUT
CLOUDML_PARAM_HIDDEN_UNITS=64
CLOUDML_PARAM_LR=0.1
CLOUDML_TASK_COUNT=8
CLOUDML_TASK_INDEX=3
EXTRA=yes
`
	if diff := cmp.Diff(wantOut, stdout); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if stderr != "err\n" {
		t.Errorf("stderr = %q", stderr)
	}
	if end.GetLastLogSeq() != uint64(batches) || batches == 0 {
		t.Errorf("last_log_seq = %d, stored batches = %d", end.GetLastLogSeq(), batches)
	}
	prefix := "results/linreg-1/3/1/"
	if want := b.URL(strings.TrimSuffix(prefix, "/")); end.GetResultsUrl() != want {
		t.Errorf("results_url = %q, want %q", end.GetResultsUrl(), want)
	}
	read := func(key string) string {
		rc, err := b.NewReader(context.Background(), key)
		if err != nil {
			t.Fatalf("result %s: %v", key, err)
		}
		defer rc.Close()
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		return buf.String()
	}
	if got := read(prefix + "logs/stdout.log"); got != stdout {
		t.Errorf("logs/stdout.log = %q, want the shipped stdout", got)
	}
	if got := read(prefix + "model/w.txt"); got != "weights\n" {
		t.Errorf("model/w.txt = %q", got)
	}
	var m attempt.Manifest
	if err := json.Unmarshal([]byte(read(prefix+"manifest.json")), &m); err != nil {
		t.Fatal(err)
	}
	if m.JobID != "linreg-1" || m.TaskIndex != 3 || m.Attempt != 1 || m.NodeID != "node-1" || m.State != "SUCCEEDED" ||
		m.ExitCode != 0 || m.Metrics["loss"] != 0.5 || m.Params["lr"] != "0.1" || m.Timings.EndedAt == "" {
		t.Errorf("manifest = %+v", m)
	}
	paths := map[string]bool{}
	for _, fi := range m.Files {
		paths[fi.Path] = true
		sum := sha256.Sum256([]byte(read(prefix + fi.Path)))
		if fi.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("manifest sha256 of %s does not match the object", fi.Path)
		}
	}
	wantPaths := map[string]bool{"metrics.json": true, "model/w.txt": true, "logs/stdout.log": true, "logs/stderr.log": true}
	if diff := cmp.Diff(wantPaths, paths); diff != "" {
		t.Errorf("manifest files (-want +got):\n%s", diff)
	}
	// The same code again (a second attempt) downloads nothing new.
	before, _ := r.CacheStats()
	rf2 := ref("linreg-1", 3, 2)
	f.assign(t, &cloudmlv1.Assignment{Ref: rf2, Command: []string{"true"}, Code: code, Output: "file://" + root})
	if end := f.waitFinal(t, rf2); end.GetState() != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		t.Fatalf("second attempt: %v", end)
	}
	if after, _ := r.CacheStats(); after != before {
		t.Errorf("downloads went from %d to %d for cached code", before, after)
	}
	// Once the results are in the bucket (before the final report), the
	// node keeps no copy of the attempts.
	for _, n := range []string{"1", "2"} {
		if _, err := os.Stat(filepath.Join(work, "attempts", "linreg-1", "3", n)); !os.IsNotExist(err) {
			t.Errorf("attempt %s's directory is still on the node (%v)", n, err)
		}
	}
}
