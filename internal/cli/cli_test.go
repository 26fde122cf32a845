package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestParseAllowsFlagsAfterArgs(t *testing.T) {
	app := &App{Stderr: &bytes.Buffer{}}
	fs := app.newFlags("logs", "")
	follow := fs.Bool("f", false, "")
	task := fs.Int("task", -1, "")
	pos, err := parse(fs, []string{"job-1", "-f", "--task", "3"})
	if err != nil || !*follow || *task != 3 || !cmp.Equal(pos, []string{"job-1"}) {
		t.Fatalf("parse = %v, %v, f=%v task=%d", pos, err, *follow, *task)
	}
	fs = app.newFlags("submit", "")
	name := fs.String("name", "", "")
	pos, err = parse(fs, []string{"--name", "q", "--", "octave-cli", "-q", "train.m"})
	if err != nil || *name != "q" || !cmp.Equal(pos, []string{"--", "octave-cli", "-q", "train.m"}) {
		t.Fatalf("parse with -- = %v, %v", pos, err)
	}
}

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

func runFake(t *testing.T, srv cloudmlv1.JobServiceServer, args ...string) (int, string, string) {
	t.Helper()
	conn := testutil.ConnectGRPC(t, func(s *grpc.Server) { cloudmlv1.RegisterJobServiceServer(s, srv) })
	var out, errb bytes.Buffer
	app := &App{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		conn: conn, jobs: cloudmlv1.NewJobServiceClient(conn), nodes: cloudmlv1.NewClusterServiceClient(conn)}
	code := app.Run(context.Background(), args)
	return code, out.String(), errb.String()
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

func TestUnknownJobAndUsage(t *testing.T) {
	code, _, errs := runFake(t, &fakeJobs{}, "logs", "missing")
	if code != ExitError || !strings.Contains(errs, "not found") || !strings.Contains(errs, "cloudml-client list") {
		t.Errorf("unknown job: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runFake(t, &fakeJobs{}, "status")
	if code != ExitUsage || !strings.Contains(errs, "JOB") {
		t.Errorf("status without a job: exit %d, stderr %q", code, errs)
	}
	code, _, _ = runFake(t, &fakeJobs{}, "frobnicate")
	if code != ExitUsage {
		t.Errorf("unknown command: exit %d", code)
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
