package cli

import (
	"context"
	"crypto"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cloudml/cloudml/internal/pki"
	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// walk calls fn for every visible command of the tree.
func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	if cmd.Hidden {
		return
	}
	fn(cmd)
	for _, sub := range cmd.Commands() {
		walk(sub, fn)
	}
}

func TestEveryCommandHelpHasAnExample(t *testing.T) {
	a, _, _ := app(nil, nil)
	root := a.newRoot()
	n := 0
	walk(root, func(cmd *cobra.Command) {
		n++
		path := strings.Fields(cmd.CommandPath())[1:]
		r := runWith(t, nil, nil, append(path, "--help")...)
		if r.code != ExitOK || !strings.Contains(r.stdout, "Examples:\n  cloudml-client") {
			t.Errorf("%s --help: exit %d, no example:\n%s%s", cmd.CommandPath(), r.code, r.stdout, r.stderr)
		}
		if cmd != root && cmd.Short == "" {
			t.Errorf("%s has no short description", cmd.CommandPath())
		}
	})
	if n < 14 {
		t.Errorf("walked %d commands, want every one (at least 14)", n)
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "complete -o default -F __start_cloudml-client", "zsh": "#compdef cloudml-client", "fish": "complete -c cloudml-client"} {
		r := runWith(t, nil, nil, "completion", shell)
		if r.code != ExitOK || !strings.Contains(r.stdout, marker) {
			t.Errorf("completion %s: exit %d, script without %q (%d bytes; stderr %q)", shell, r.code, marker, len(r.stdout), r.stderr)
		}
	}
	if r := runWith(t, nil, nil, "completion", "tcsh"); r.code != ExitUsage || !strings.Contains(r.stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d stderr %q", r.code, r.stderr)
	}
}

// created is when the fake jobs were made.
var created = timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))

// listJobs keeps two jobs and one node.
type listJobs struct {
	fakeJobs
	cloudmlv1.UnimplementedClusterServiceServer
}

func (listJobs) ListJobs(context.Context, *cloudmlv1.ListJobsRequest) (*cloudmlv1.ListJobsResponse, error) {
	return &cloudmlv1.ListJobsResponse{Jobs: []*cloudmlv1.Job{
		{Id: "b-222222", State: cloudmlv1.JobState_JOB_STATE_RUNNING, TaskCount: 1, TaskStates: map[string]int32{"running": 1},
			CreateTime: created, Spec: &cloudmlv1.JobSpec{Image: "box:1", Command: []string{"sh", "x.sh"}}, Output: "file:///b"},
		{Id: "a-111111", State: cloudmlv1.JobState_JOB_STATE_SUCCEEDED, TaskCount: 2, TaskStates: map[string]int32{"succeeded": 2},
			CreateTime: created, Spec: &cloudmlv1.JobSpec{Command: []string{"octave-cli", "train.m"}}, Output: "file:///a"},
	}}, nil
}

func (listJobs) ListNodes(context.Context, *cloudmlv1.ListNodesRequest) (*cloudmlv1.ListNodesResponse, error) {
	return &cloudmlv1.ListNodesResponse{Nodes: []*cloudmlv1.Node{
		{Id: "node-1", Hostname: "gpu-a", State: cloudmlv1.NodeState_NODE_STATE_READY, Runtime: "process", Slots: 2, Address: "10.0.0.1", SwarmRole: "manager"},
	}}, nil
}

func (listJobs) GetClusterInfo(context.Context, *cloudmlv1.GetClusterInfoRequest) (*cloudmlv1.GetClusterInfoResponse, error) {
	return &cloudmlv1.GetClusterInfoResponse{DefaultBucket: "gs://models", Provider: "digitalocean", Version: "v1.2.3", HeartbeatPort: 7443}, nil
}

// noPulse is a coordinator whose heartbeats come to its own port.
type noPulse struct{ listJobs }

func (noPulse) GetClusterInfo(context.Context, *cloudmlv1.GetClusterInfoRequest) (*cloudmlv1.GetClusterInfoResponse, error) {
	return &cloudmlv1.GetClusterInfoResponse{Provider: "local", Version: "dev"}, nil
}

func TestClusterInfo(t *testing.T) {
	r := runWith(t, fakeServer(t, &listJobs{}), nil, "cluster", "info")
	for _, want := range []string{"version         v1.2.3\n", "provider        digitalocean\n", "default bucket  gs://models\n", "heartbeats      port 7443, a process of its own\n"} {
		if r.code != ExitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("cluster info: exit %d, no %q in\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	if !strings.HasPrefix(r.stdout, "coordinator     ") {
		t.Errorf("cluster info does not begin with the coordinator's address:\n%s", r.stdout)
	}
	r = runWith(t, fakeServer(t, &listJobs{}), nil, "cluster", "info", "-o", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"heartbeatPort": 7443`) || !strings.Contains(r.stdout, `"provider": "digitalocean"`) {
		t.Errorf("cluster info -o json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runWith(t, fakeServer(t, &noPulse{}), nil, "cluster", "info")
	if r.code != ExitOK || !strings.Contains(r.stdout, "heartbeats      the coordinator's port\n") || !strings.Contains(r.stdout, "default bucket  -\n") {
		t.Errorf("cluster info without a pulse: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestOutputFlagAnywhere(t *testing.T) {
	dial := fakeServer(t, &listJobs{})
	first := runWith(t, dial, nil, "list", "-o", "json")
	for _, args := range [][]string{{"-o", "json", "list"}, {"--output=json", "list"}, {"list", "--output", "json"}, {"ls", "-ojson"}} {
		r := runWith(t, dial, nil, args...)
		if r.code != ExitOK || r.stdout != first.stdout {
			t.Errorf("%v: exit %d, printed\n%s\nwant the bytes of list -o json:\n%s", args, r.code, r.stdout, first.stdout)
		}
	}
	if first.code != ExitOK || !strings.Contains(first.stdout, `"id": "b-222222"`) {
		t.Errorf("list -o json: exit %d\n%s%s", first.code, first.stdout, first.stderr)
	}
	if r := runWith(t, dial, nil, "list", "-o", "yaml"); r.code != ExitUsage || !strings.Contains(r.stderr, "table, wide or json") {
		t.Errorf("list -o yaml: exit %d stderr %q", r.code, r.stderr)
	}
}

func TestWideAddsColumns(t *testing.T) {
	dial := fakeServer(t, &listJobs{})
	for _, tc := range []struct {
		args []string
		head string
		more []string
	}{
		{[]string{"list"}, "JOB       STATE      TASKS  PROGRESS     AGE\n", []string{"DURATION", "IMAGE", "COMMAND", "OUTPUT", "octave-cli train.m"}},
		{[]string{"cluster", "nodes"}, "NODE    HOSTNAME  STATE  RUNTIME  SLOTS  RUNNING  MESSAGE\n", []string{"SWARM", "ADDRESS", "MEMORY", "LAST SEEN", "10.0.0.1"}},
	} {
		table := runWith(t, dial, nil, tc.args...)
		wide := runWith(t, dial, nil, append(tc.args, "-o", "wide")...)
		if table.code != ExitOK || !strings.HasPrefix(table.stdout, tc.head) {
			t.Errorf("%v: exit %d\n%s", tc.args, table.code, table.stdout)
		}
		for _, m := range tc.more {
			if strings.Contains(table.stdout, m) || wide.code != ExitOK || !strings.Contains(wide.stdout, m) {
				t.Errorf("%v: %q should show with -o wide only:\n%s\n%s", tc.args, m, table.stdout, wide.stdout)
			}
		}
	}
}

// exitJobs fails to find every job but "known", whose logs end in state.
func TestExitCodes(t *testing.T) {
	cred := credentialFile(t, "127.0.0.1:1")
	spec := filepath.Join(t.TempDir(), "cloudml.yaml")
	os.WriteFile(spec, []byte("name: x\ncommand: [true]\nparalelism: 2\n"), 0o644)
	logs := func(s cloudmlv1.JobState) []grpc.DialOption { return fakeServer(t, &fakeJobs{final: s}) }
	for _, tc := range []struct {
		name string
		dial []grpc.DialOption
		args []string
		want int
		says string
	}{
		{"ok", logs(cloudmlv1.JobState_JOB_STATE_SUCCEEDED), []string{"logs", "-f", "known"}, ExitOK, ""},
		{"unknown job", logs(0), []string{"logs", "nope"}, ExitError, `error: logs of nope: job "nope" not found (see 'cloudml-client list')`},
		{"unreachable", nil, []string{"--config", cred, "list"}, ExitError, "cannot reach the coordinator at 127.0.0.1:1"},
		{"no credential", nil, []string{"--config", cred + ".missing", "list"}, ExitError, "no credential file at " + cred + ".missing"},
		{"unknown flag", logs(0), []string{"list", "--bogus"}, ExitUsage, "unknown flag: --bogus"},
		{"unknown command", logs(0), []string{"lsit"}, ExitUsage, `unknown command "lsit"`},
		{"missing argument", logs(0), []string{"logs"}, ExitUsage, "logs needs exactly one JOB id"},
		{"extra argument", logs(0), []string{"list", "x"}, ExitUsage, `list takes no arguments, got "x"`},
		{"no command", logs(0), nil, ExitUsage, "give a command"},
		{"group alone", logs(0), []string{"cluster"}, ExitUsage, "cluster needs a subcommand: 'cluster up' or 'cluster scale'"},
		{"bad -o", logs(0), []string{"-o", "xml", "list"}, ExitUsage, "-o must be table, wide or json"},
		{"invalid spec", logs(0), []string{"submit", "-f", spec}, ExitUsage, `unknown field "paralelism" (did you mean "parallelism"?)`},
		{"command before --", logs(0), []string{"submit", "--code", ".", "octave-cli"}, ExitUsage, "put the command after --"},
		{"failed", logs(cloudmlv1.JobState_JOB_STATE_FAILED), []string{"logs", "known", "-f"}, ExitJobFailed, "job known failed"},
		{"cancelled", logs(cloudmlv1.JobState_JOB_STATE_CANCELLED), []string{"logs", "known", "-f"}, ExitJobCancelled, "job known was cancelled"},
	} {
		var r ran
		if tc.dial == nil {
			a, out, errb := app(nil, nil)
			a.Configure = nil
			r = ran{a.Run(t.Context(), tc.args), out.String(), errb.String()}
		} else {
			r = runWith(t, tc.dial, nil, tc.args...)
		}
		if r.code != tc.want || !strings.Contains(r.stderr, tc.says) {
			t.Errorf("%s: %v: exit %d, stderr %q; want exit %d saying %q", tc.name, tc.args, r.code, r.stderr, tc.want, tc.says)
		}
	}
}

func TestStatusNamesNodesByHostname(t *testing.T) {
	srv := &watchJobs{jobs: []*cloudmlv1.Job{watchJob(cloudmlv1.JobState_JOB_STATE_RUNNING, cloudmlv1.TaskState_TASK_STATE_RUNNING)}}
	r := runWith(t, fakeServer(t, srv), nil, "status", "j-1")
	if r.code != ExitOK || !strings.Contains(r.stdout, "job j-1: running, 1 task (running=1)") || !strings.Contains(r.stdout, "node-1 (gpu-a)") {
		t.Errorf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestSubmitFlagsAndCommand(t *testing.T) {
	srv := &stagingJobs{}
	dial := fakeServer(t, srv)
	r := runWith(t, dial, nil, "submit", "--code", "file:///code", "--", "octave-cli", "-q", "--name", "train.m")
	if r.code != ExitOK || srv.spec.GetName() != "code" || !cmp.Equal(srv.spec.GetCommand(), []string{"octave-cli", "-q", "--name", "train.m"}) {
		t.Errorf("submit -- COMMAND: exit %d, spec %v; stderr %q", r.code, srv.spec, r.stderr)
	}
	r = runWith(t, dial, nil, "submit", "--timeout", "10m", "--code", "file:///code", "--param", "lr=0.1,0.3", "--env", "A=1",
		"--name", "Sweep", "--output-bucket", "file:///out", "--objective", "acc:max", "--retries", "2", "--parallelism", "0", "--", "true")
	want := &cloudmlv1.JobSpec{Name: "sweep", Code: &cloudmlv1.Source{Url: "file:///code"}, Command: []string{"true"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"lr": {Values: []string{"0.1", "0.3"}}}},
		Env:   map[string]string{"A": "1"}, Output: "file:///out", Objective: &cloudmlv1.Objective{Metric: "acc", Maximize: true},
		Retries: 2, Timeout: durationpb.New(10 * time.Minute)}
	if diff := cmp.Diff(want, srv.spec, protocmp.Transform()); r.code != ExitOK || diff != "" {
		t.Errorf("submit with every flag: exit %d, stderr %q, spec (-want +got):\n%s", r.code, r.stderr, diff)
	}
	// A job with no code: the command alone, named after its program.
	r = runWith(t, dial, nil, "submit", "--image", "busybox", "--", "/bin/echo", "hi")
	if r.code != ExitOK || srv.spec.GetName() != "echo" || srv.spec.GetCode() != nil || !cmp.Equal(srv.spec.GetCommand(), []string{"/bin/echo", "hi"}) {
		t.Errorf("submit -- COMMAND without code: exit %d, spec %v; stderr %q", r.code, srv.spec, r.stderr)
	}
	if r = runWith(t, dial, nil, "submit", "--image", "busybox"); r.code != ExitUsage || !strings.Contains(r.stderr, "or a command after --") {
		t.Errorf("submit with neither spec, code nor command: exit %d, stderr %q", r.code, r.stderr)
	}
	// Before -o was global, submit --output named the results bucket.
	r = runWith(t, dial, nil, "submit", "--code", "file:///code", "--output", "file:///old", "--", "true")
	if r.code != ExitOK || srv.spec.GetOutput() != "file:///old" || r.stdout != "boxed-123456\n" || !strings.Contains(r.stderr, "--output-bucket") {
		t.Errorf("submit --output URL: exit %d, output %q, stdout %q, stderr %q", r.code, srv.spec.GetOutput(), r.stdout, r.stderr)
	}
}

func TestCompletionOfJobIDs(t *testing.T) {
	r := runWith(t, fakeServer(t, &listJobs{}), nil, "__complete", "status", "b")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "b-222222\trunning\n") || strings.Contains(r.stdout, "a-111111") {
		t.Errorf("__complete status b: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runWith(t, nil, nil, "help", "nope"); r.code != ExitUsage || !strings.Contains(r.stderr, `unknown help topic "nope"`) {
		t.Errorf("help nope: exit %d, stderr %q", r.code, r.stderr)
	}
}

// credentialFile writes a client credential for a coordinator at addr,
// signed by a CA of the test's own, and returns its path.
func credentialFile(t *testing.T, addr string) string {
	t.Helper()
	p := testutil.NewPKI(t)
	pair := p.Pair(pki.RoleClient, "tester", time.Hour)
	keyPEM, err := pki.EncodeKey(pair.PrivateKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config")
	c := &pki.Credential{Coordinator: addr, Name: "tester", Role: pki.RoleClient, CA: string(p.CA.CertPEM),
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pair.Certificate[0]})), Key: string(keyPEM)}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}
