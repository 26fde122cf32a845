package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/client"
	"github.com/cloudml/cloudml/internal/testutil"
	"github.com/cloudml/cloudml/internal/testutil/inproc"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestNameFrom(t *testing.T) {
	for in, want := range map[string]string{"./examples/linreg": "linreg", "/x/My_Model/": "my-model", "gs://b/code": "code", ".": "job"} {
		if got := nameFrom(in); got != want {
			t.Errorf("nameFrom(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLinePrinterPrefixesEveryLine(t *testing.T) {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	msg := &cloudmlv1.SubscribeLogsResponse{TaskIndex: 3, Attempt: 2, Data: []byte("a\nb\n")}
	if err := (linePrinter{prefix: true}).write(w, msg); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if got, want := buf.String(), "[3#2] a\n[3#2] b\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPlural(t *testing.T) {
	for n, want := range map[int]string{0: "0 tasks", 1: "1 task", 2: "2 tasks"} {
		if got := plural(n, "task"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// fakeJobs serves a scripted log stream and NotFound for everything else.
type fakeJobs struct {
	cloudmlv1.UnimplementedJobServiceServer
	final cloudmlv1.JobState
}

func (f *fakeJobs) SubscribeLogs(req *cloudmlv1.SubscribeLogsRequest, s grpc.ServerStreamingServer[cloudmlv1.SubscribeLogsResponse]) error {
	if req.JobId != "known" {
		return status.Errorf(codes.NotFound, "job %q not found", req.JobId)
	}
	s.Send(&cloudmlv1.SubscribeLogsResponse{TaskIndex: 0, Attempt: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDOUT, Data: []byte("out\n")})
	s.Send(&cloudmlv1.SubscribeLogsResponse{TaskIndex: 1, Attempt: 1, Stream: cloudmlv1.LogStream_LOG_STREAM_STDERR, Data: []byte("err\n")})
	return s.Send(&cloudmlv1.SubscribeLogsResponse{JobState: f.final})
}

// ran is one run of the client.
type ran struct {
	code           int
	stdout, stderr string
}

// app is a client whose coordinator is reached with dial.
func app(dial []grpc.DialOption, mod func(*client.Config)) (*App, *bytes.Buffer, *bytes.Buffer) {
	var out, errb bytes.Buffer
	return &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		Configure: func(c *client.Config) {
			c.Address, c.DialOptions = inproc.Target, dial
			if mod != nil {
				mod(c)
			}
		}}, &out, &errb
}

// runWith runs the client with args against the server dial reaches.
func runWith(t *testing.T, dial []grpc.DialOption, mod func(*client.Config), args ...string) ran {
	t.Helper()
	a, out, errb := app(dial, mod)
	code := a.Run(t.Context(), args)
	return ran{code, out.String(), errb.String()}
}

// fakeServer serves srv as JobService (and ClusterService if it is one).
func fakeServer(t *testing.T, srv cloudmlv1.JobServiceServer) []grpc.DialOption {
	return testutil.ServeGRPC(t, func(s *grpc.Server) {
		cloudmlv1.RegisterJobServiceServer(s, srv)
		if cs, ok := srv.(cloudmlv1.ClusterServiceServer); ok {
			cloudmlv1.RegisterClusterServiceServer(s, cs)
		}
	})
}

func runFake(t *testing.T, srv cloudmlv1.JobServiceServer, args ...string) (int, string, string) {
	t.Helper()
	r := runWith(t, fakeServer(t, srv), nil, args...)
	return r.code, r.stdout, r.stderr
}

func TestLogsFollowExitsWithJobState(t *testing.T) {
	for state, want := range map[cloudmlv1.JobState]int{
		cloudmlv1.JobState_JOB_STATE_SUCCEEDED: ExitOK,
		cloudmlv1.JobState_JOB_STATE_FAILED:    ExitJobFailed,
		cloudmlv1.JobState_JOB_STATE_CANCELLED: ExitJobCancelled,
	} {
		code, out, errs := runFake(t, &fakeJobs{final: state}, "logs", "-f", "known")
		if code != want || out != "[0] out\n" || !strings.HasPrefix(errs, "[1] err\n") {
			t.Errorf("%s: exit %d stdout %q stderr %q; want exit %d", state, code, out, errs, want)
		}
	}
}

func TestFlagsAnywhere(t *testing.T) {
	srv := &fakeJobs{final: cloudmlv1.JobState_JOB_STATE_SUCCEEDED}
	// The fake ignores --task: what shows it was parsed is the missing prefix.
	for _, args := range [][]string{
		{"logs", "known", "-f", "--task", "1"},
		{"logs", "--task=1", "known", "--follow"},
		{"--coordinator", "elsewhere:1", "logs", "-f", "known", "--task", "1"},
		{"logs", "-f", "known", "--task", "1", "--coordinator", "elsewhere:1"},
	} {
		code, out, errs := runFake(t, srv, args...)
		if code != ExitOK || out != "out\n" || errs != "err\n" {
			t.Errorf("%v: exit %d stdout %q stderr %q; want lines without prefix", args, code, out, errs)
		}
	}
	code, out, _ := runFake(t, srv, "logs", "known", "-o", "json")
	var line jsonLine
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &line); err != nil || code != ExitOK || line.Line != "out" {
		t.Errorf("logs known -o json: exit %d, %v, first line %q", code, err, out)
	}
}

func TestUnknownJobAndUsage(t *testing.T) {
	code, _, errs := runFake(t, &fakeJobs{}, "logs", "missing")
	if code != ExitError || !strings.Contains(errs, "not found") || !strings.Contains(errs, "cloudml-client list") {
		t.Errorf("unknown job: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runFake(t, &fakeJobs{}, "status")
	if code != ExitUsage || !strings.Contains(errs, "JOB") {
		t.Errorf("status without a job: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runFake(t, &fakeJobs{}, "frobnicate")
	if code != ExitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errs)
	}
}

// deleteJobs answers DeleteJob for "done" and refuses "running".
type deleteJobs struct{ fakeJobs }

func (deleteJobs) DeleteJob(_ context.Context, req *cloudmlv1.DeleteJobRequest) (*cloudmlv1.DeleteJobResponse, error) {
	switch req.JobId {
	case "done":
		return &cloudmlv1.DeleteJobResponse{Job: &cloudmlv1.Job{Id: "done", State: cloudmlv1.JobState_JOB_STATE_SUCCEEDED},
			LogBytesFreed: 3 << 20}, nil
	case "running":
		return nil, status.Error(codes.FailedPrecondition, "job running has not ended (running); stop it first with `cloudml-client cancel running`")
	}
	return nil, status.Errorf(codes.NotFound, "job %q not found", req.JobId)
}

func TestDeleteReportsEachJob(t *testing.T) {
	code, out, errs := runFake(t, &deleteJobs{}, "delete", "done", "running")
	if code != ExitError || out != "deleted job done (succeeded); 3.0 MiB of logs freed\n" ||
		!strings.Contains(errs, "cloudml-client cancel running") {
		t.Errorf("delete done running: exit %d stdout %q stderr %q", code, out, errs)
	}
	code, out, _ = runFake(t, &deleteJobs{}, "-o", "json", "delete", "done")
	var got struct {
		Deleted []struct {
			Job           struct{ ID, State string }
			LogBytesFreed string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != ExitOK || len(got.Deleted) != 1 ||
		got.Deleted[0].Job.State != "JOB_STATE_SUCCEEDED" || got.Deleted[0].LogBytesFreed != "3145728" {
		t.Errorf("delete -o json: exit %d, %v, %+v from\n%s", code, err, got, out)
	}
	if code, _, errs := runFake(t, &deleteJobs{}, "delete"); code != ExitUsage || !strings.Contains(errs, "job id") {
		t.Errorf("delete without ids: exit %d stderr %q", code, errs)
	}
}
