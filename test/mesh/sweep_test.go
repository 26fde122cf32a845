package mesh

import (
	"context"
	"image/png"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/archive"
	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

const sweepScript = `echo "task $CLOUDML_TASK_INDEX/$CLOUDML_TASK_COUNT attempt $CLOUDML_ATTEMPT lr=$CLOUDML_PARAM_LR depth=$CLOUDML_PARAM_DEPTH"
echo "to stderr" >&2
echo "model $CLOUDML_PARAM_LR" > "$CLOUDML_OUTPUT_DIR/model.txt"
echo "{\"loss\": $CLOUDML_PARAM_LR, \"depth\": $CLOUDML_PARAM_DEPTH}" > "$CLOUDML_OUTPUT_DIR/metrics.json"
`

// upload packs dir into the bucket as the client does and returns its source.
func upload(t *testing.T, bucketURL, dir string) *cloudmlv1.Source {
	t.Helper()
	ctx := context.Background()
	path, digest, _, err := archive.PackFile(ctx, dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := bucket.Open(ctx, bucketURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key := "code/" + strings.Replace(digest, ":", "-", 1) + ".tar.gz"
	if err := b.Put(ctx, key, f, true); err != nil {
		t.Fatal(err)
	}
	return &cloudmlv1.Source{Url: b.URL(key), Digest: digest}
}

func sweepSpec(code *cloudmlv1.Source) *cloudmlv1.JobSpec {
	return &cloudmlv1.JobSpec{
		Name:    "sweep",
		Code:    code,
		Command: []string{"sh", "task.sh"},
		Sweep: &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{
			"lr":    {Values: []string{"0.4", "0.1", "0.3", "0.2"}},
			"depth": {Values: []string{"1", "2"}},
		}},
		Timeout:   durationpb.New(time.Minute),
		Objective: &cloudmlv1.Objective{Metric: "loss"},
	}
}

// TestSweepOnTwoAgents runs an 8-task sweep on two real agents and checks
// logs, placement, results ranking and the objects in the bucket.
func TestSweepOnTwoAgents(t *testing.T) {
	root := t.TempDir()
	m := newMesh(t, filepath.Join(root, "state"))
	defer m.stop()
	m.startAgent(filepath.Join(root, "node-a"), 2)
	m.startAgent(filepath.Join(root, "node-b"), 2)
	m.waitNodes(2)

	ctx := context.Background()
	sub, err := m.jobs.SubmitJob(ctx, &cloudmlv1.SubmitJobRequest{Spec: sweepSpec(upload(t, m.bucket, codeDir(t, sweepScript)))})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Job.Id
	if sub.Job.TaskCount != 8 {
		t.Fatalf("task count %d, want 8", sub.Job.TaskCount)
	}
	logs, state := m.follow(id)
	if state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
		t.Fatalf("job ended %s", state)
	}
	job, err := m.jobs.GetJob(ctx, &cloudmlv1.GetJobRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]int{}
	for _, tk := range job.Job.Tasks {
		nodes[tk.NodeId]++
		want := []string{"task " + itoa(tk.Index) + "/8 attempt 1", "lr=" + tk.Params["lr"], "depth=" + tk.Params["depth"], "to stderr"}
		if err := contains(logs[tk.Index], want...); err != nil {
			t.Errorf("task %d logs: %v", tk.Index, err)
		}
		if tk.State != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || tk.ExitCode != 0 {
			t.Errorf("task %d: %s exit %d (%s)", tk.Index, tk.State, tk.ExitCode, tk.Reason)
		}
	}
	if len(nodes) != 2 {
		t.Errorf("tasks ran on %v, want both nodes", nodes)
	}

	res, err := m.jobs.GetResults(ctx, &cloudmlv1.GetResultsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Rows {
		got = append(got, r.Params["lr"])
	}
	if want := "0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4"; strings.Join(got, " ") != want {
		t.Errorf("results order by loss: %v, want %s", got, want)
	}
	checkBucket(t, res.Rows[0].ResultsUrl, "model.txt", "metrics.json", "manifest.json", "logs/stdout.log", "logs/stderr.log")
}

// checkBucket asserts the files exist under a results prefix.
func checkBucket(t *testing.T, prefixURL string, files ...string) {
	t.Helper()
	ctx := context.Background()
	b, loc, err := bucket.Open(ctx, prefixURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, f := range files {
		r, err := b.NewReader(ctx, path.Join(loc.Key, f))
		if err != nil {
			t.Errorf("%s/%s: %v", prefixURL, f, err)
			continue
		}
		data, _ := io.ReadAll(r)
		r.Close()
		if len(data) == 0 {
			t.Errorf("%s/%s is empty", prefixURL, f)
		}
	}
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

// checkPNGs asserts each file under a results prefix is a PNG image.
func checkPNGs(t *testing.T, prefixURL string, files ...string) {
	t.Helper()
	ctx := context.Background()
	b, loc, err := bucket.Open(ctx, prefixURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, f := range files {
		r, err := b.NewReader(ctx, path.Join(loc.Key, f))
		if err != nil {
			t.Errorf("%s/%s: %v", prefixURL, f, err)
			continue
		}
		cfg, err := png.DecodeConfig(r)
		r.Close()
		if err != nil || cfg.Width < 100 || cfg.Height < 100 {
			t.Errorf("%s/%s: not a PNG figure (%v, %dx%d)", prefixURL, f, err, cfg.Width, cfg.Height)
		}
	}
}
