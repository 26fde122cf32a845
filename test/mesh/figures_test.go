package mesh

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudml/cloudml/internal/testutil"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// TestOctaveFiguresBecomePNGs: a script that draws figures and would fail
// headless runs unchanged in the process runtime, and every figure still
// open at its end is in the task's results as a PNG.
func TestOctaveFiguresBecomePNGs(t *testing.T) {
	testutil.NeedBinary(t, "octave-cli")
	testutil.NeedBinary(t, "gnuplot")
	root := t.TempDir()
	m := newMesh(t, filepath.Join(root, "state"))
	defer m.stop()
	m.startAgent(filepath.Join(root, "node-a"), 1)
	m.waitNodes(1)
	dir := t.TempDir()
	script := "x = linspace(0, 2*pi);\nfigure; plot(x, sin(x)); title('sin');\nfigure; surf(peaks(20));\ndisp('plotted');\n"
	if err := os.WriteFile(filepath.Join(dir, "draw.m"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &cloudmlv1.JobSpec{Name: "plots", Code: upload(t, m.bucket, dir), Command: []string{"octave-cli", "draw.m"}}
	sub, err := m.jobs.SubmitJob(context.Background(), &cloudmlv1.SubmitJobRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	logs, state := m.follow(sub.Job.Id)
	if state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %s:\n%s", state, logs[0])
	}
	res, err := m.jobs.GetResults(context.Background(), &cloudmlv1.GetResultsRequest{JobId: sub.Job.Id})
	if err != nil {
		t.Fatal(err)
	}
	checkPNGs(t, res.Rows[0].ResultsUrl, "figure-1.png", "figure-2.png")
}
