package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudml/cloudml/client"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// bigCode is a directory with size bytes of incompressible data.
func bigCode(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUploadProgressOnATerminalOnly(t *testing.T) {
	p := startCoordinator(t)
	code := bigCode(t, 24<<20)

	term := openTerminal(t)
	a, out, _ := app(p.c.DialOptions(), nil)
	a.Stderr = term.tty
	if exit := a.Run(t.Context(), []string{"submit", "--code", code, "--", "true"}); exit != ExitOK {
		t.Fatalf("submit: exit %d\n%s", exit, term.close())
	}
	shown := term.close()
	t.Logf("terminal:\n%q", shown)
	for _, want := range []string{"upload   " + code, "24.0 MiB, uploaded", "submitted ", ": 1 task;"} {
		if !strings.Contains(shown, want) {
			t.Errorf("terminal shows no %q:\n%q", want, shown)
		}
	}
	if !regexp.MustCompile(`^[a-z0-9-]+-[0-9a-f]{6}\n$`).MatchString(out.String()) {
		t.Errorf("stdout %q is not the job id", out.String())
	}

	// The same submit piped: the upload is skipped (same digest) and no
	// bar is drawn; a new directory uploads without a bar either.
	for _, dir := range []string{code, bigCode(t, 24<<20)} {
		r := runWith(t, p.c.DialOptions(), nil, "submit", "--code", dir, "--", "true")
		if r.code != ExitOK || strings.Contains(r.stderr, "upload ") || strings.Contains(r.stderr, "MiB") || strings.Contains(r.stderr, "\x1b[") {
			t.Errorf("piped submit: exit %d, stderr shows progress:\n%q", r.code, r.stderr)
		}
	}
}

// stagingJobs accepts a job (the last one kept in spec) and then shows
// its staging.
type stagingJobs struct {
	watchJobs
	spec *cloudmlv1.JobSpec
}

func (s *stagingJobs) SubmitJob(_ context.Context, req *cloudmlv1.SubmitJobRequest) (*cloudmlv1.SubmitJobResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spec = req.GetSpec()
	return &cloudmlv1.SubmitJobResponse{Job: &cloudmlv1.Job{Id: "boxed-123456", TaskCount: 2, Spec: req.GetSpec()}}, nil
}

func TestSubmitShowsEachNodesStagingOnATerminal(t *testing.T) {
	job := func(states ...cloudmlv1.StageState) *cloudmlv1.Job {
		j := watchJob(cloudmlv1.JobState_JOB_STATE_PENDING, cloudmlv1.TaskState_TASK_STATE_PENDING)
		for i, st := range states {
			j.Stages = append(j.Stages, &cloudmlv1.NodeStage{NodeId: fmt.Sprintf("node-%d", i+1), State: st, BytesDownloaded: int64(i+1) << 20})
		}
		return j
	}
	const staging, staged = cloudmlv1.StageState_STAGE_STATE_STAGING, cloudmlv1.StageState_STAGE_STATE_STAGED
	srv := &stagingJobs{watchJobs: watchJobs{jobs: []*cloudmlv1.Job{job(staging, staging), job(staged, staging), job(staged, staged)}}}
	noDocker := func(c *client.Config) {
		c.Docker = func() (client.DockerImages, error) { return nil, errors.New("no docker here") }
	}
	args := []string{"submit", "--code", "file:///code", "--image", "box:1", "--", "true"}

	term := openTerminal(t)
	a, out, _ := app(fakeServer(t, srv), noDocker)
	a.Stderr = term.tty
	if code := a.Run(t.Context(), args); code != ExitOK || out.String() != "boxed-123456\n" {
		t.Fatalf("submit: exit %d, stdout %q\n%s", code, out.String(), term.close())
	}
	shown := term.close()
	for _, want := range []string{"stage    node-1 (gpu-a)", "1.0 MiB, staged", "stage    node-2", "2.0 MiB, staged", ": 2 tasks;"} {
		if !strings.Contains(shown, want) {
			t.Errorf("terminal shows no %q:\n%q", want, shown)
		}
	}

	// Off a terminal, or with --detach, submit does not wait.
	srv.gets = 0
	for _, extra := range [][]string{nil, {"-d"}} {
		a, _, errb := app(fakeServer(t, srv), noDocker)
		if extra != nil {
			term := openTerminal(t)
			a.Stderr = term.tty
		}
		if code := a.Run(t.Context(), append(append([]string{"submit"}, extra...), args[1:]...)); code != ExitOK || srv.gets != 0 {
			t.Errorf("submit %v: exit %d, read the job %d times; stderr %q", extra, code, srv.gets, errb.String())
		}
	}
}
