package e2e

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/metricjson"
	"github.com/cloudml/cloudml/internal/testutil"
)

// TestLinregSweepGCS runs examples/linreg (12 Octave tasks) on 2 local agents
// with results in a fake-gcs-server bucket reached through the real GCS
// client in every process.
func TestLinregSweepGCS(t *testing.T) {
	testutil.Short(t)
	testutil.NeedBinary(t, "octave-cli")
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0})
	if err != nil {
		t.Fatalf("start fake-gcs-server: %v", err)
	}
	defer srv.Stop()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "cloudml-e2e"})
	u, _ := url.Parse(srv.URL())
	emu := "STORAGE_EMULATOR_HOST=" + u.Host
	t.Setenv("STORAGE_EMULATOR_HOST", u.Host)

	c := startCluster(t, clusterOpts{nodes: 2, slots: 2, bucket: "gs://cloudml-e2e/runs", env: []string{emu}})
	job := strings.TrimSpace(c.mustClient("submit", "-f", filepath.Join(repoRoot(), "examples/linreg/cloudml.yaml")))
	if job == "" {
		t.Fatal("submit printed no job id")
	}
	logs := c.client("logs", "-f", job)
	if logs.Code != 0 {
		t.Fatalf("logs -f %s: exit %d\n%s\n%s\n%s", job, logs.Code, logs.Stdout, logs.Stderr, c.mustClient("status", job))
	}
	checkLinreg(t, c, job, logs.Stdout)

	b, _, err := bucket.Open(context.Background(), "gs://cloudml-e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checkResultObjects(t, b, "runs/results/"+job, 12)

	// Code already in a bucket, as the seed's gsutil cp did: a prefix of
	// loose objects is staged as it is.
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "cloudml-e2e", Name: "seed/model.sh"},
		Content: []byte("cat lib/msg.txt; echo \"param $CLOUDML_PARAM_N\"\n")})
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "cloudml-e2e", Name: "seed/lib/msg.txt"},
		Content: []byte("hello from gs\n")})
	seed := strings.TrimSpace(c.mustClient("submit", "--name", "seed", "--code", "gs://cloudml-e2e/seed", "--param", "n=1,2", "--", "sh", "model.sh"))
	out := c.client("logs", "-f", seed)
	if out.Code != 0 || strings.Count(out.Stdout, "hello from gs") != 2 || !strings.Contains(out.Stdout, "[1] param 2") {
		t.Errorf("job with gs:// code: exit %d\n%s%s", out.Code, out.Stdout, out.Stderr)
	}

	// Deleting ended jobs forgets them on the coordinator; their results
	// stay in the bucket. An unknown id among them is an error of its own.
	del := c.client("delete", job, seed, "nope-123456")
	if del.Code != 1 || strings.Count(del.Stdout, "deleted job ") != 2 || !strings.Contains(del.Stderr, "nope-123456") {
		t.Errorf("delete: exit %d\n%s%s", del.Code, del.Stdout, del.Stderr)
	}
	if st := c.client("status", job); st.Code != 1 || !strings.Contains(st.Stderr, "not found") {
		t.Errorf("status of a deleted job: exit %d\n%s%s", st.Code, st.Stdout, st.Stderr)
	}
	checkResultObjects(t, b, "runs/results/"+job, 12)
}

type resultsJSON struct {
	Objective struct {
		Metric string `json:"metric"`
	} `json:"objective"`
	JobState string `json:"jobState"`
	Rows     []struct {
		TaskIndex  int               `json:"taskIndex"`
		State      string            `json:"state"`
		Params     map[string]string `json:"params"`
		Metrics    metricjson.Map    `json:"metrics"`
		ResultsURL string            `json:"resultsUrl"`
	} `json:"rows"`
}

type jobJSON struct {
	State string `json:"state"`
	Tasks []struct {
		Index  int    `json:"index"`
		State  string `json:"state"`
		NodeID string `json:"nodeId"`
	} `json:"tasks"`
}

// checkLinreg asserts the sweep's logs, status and results.
func checkLinreg(t *testing.T, c *cluster, job, logs string) {
	t.Helper()
	for i := 0; i < 12; i++ {
		if !strings.Contains(logs, "["+itoa(i)+"] ") {
			t.Errorf("logs have no line from task %d", i)
		}
	}
	var st jobJSON
	c.jsonOf(&st, "status", job)
	nodes := map[string]bool{}
	for _, tk := range st.Tasks {
		if tk.State != "TASK_STATE_SUCCEEDED" {
			t.Errorf("task %d: %s", tk.Index, tk.State)
		}
		nodes[tk.NodeID] = true
	}
	if st.State != "JOB_STATE_SUCCEEDED" || len(st.Tasks) != 12 || len(nodes) != 2 {
		t.Errorf("job %s: state %s, %d tasks on nodes %v; want succeeded, 12 tasks on 2 nodes", job, st.State, len(st.Tasks), nodes)
	}
	var res resultsJSON
	c.jsonOf(&res, "results", job)
	if res.Objective.Metric != "val_mse" || len(res.Rows) != 12 {
		t.Fatalf("results: objective %q, %d rows", res.Objective.Metric, len(res.Rows))
	}
	// The lr=1.0 tasks diverge, report val_mse "Infinity" and rank last.
	vals := make([]float64, len(res.Rows))
	for i, r := range res.Rows {
		vals[i] = r.Metrics["val_mse"]
		diverged := r.Params["lr"] == "1.0"
		if got := math.IsInf(vals[i], 1); got != diverged || (i >= 9) != diverged {
			t.Errorf("rank %d: task %d (%v) val_mse %v; want the 3 diverged lr=1.0 tasks last, at +Inf", i+1, r.TaskIndex, r.Params, vals[i])
		}
		if diverged && !math.IsNaN(r.Metrics["r2_val"]) {
			t.Errorf("task %d diverged but r2_val is %v, want NaN", r.TaskIndex, r.Metrics["r2_val"])
		}
	}
	if !sort.Float64sAreSorted(vals) {
		t.Errorf("results not best first by val_mse: %v", vals)
	}
	if best := res.Rows[0].Params; best["lr"] != "0.3" || best["lambda"] != "0" {
		t.Errorf("best params %v, want lr=0.3 lambda=0 (the closed-form optimum)", best)
	}
	table := c.mustClient("results", job)
	if !strings.Contains(table, "best: task") || !strings.Contains(table, "VAL_MSE") {
		t.Errorf("results table lacks the best line or the metric column:\n%s", table)
	}
}

// checkResultObjects asserts every task left its model, metrics, logs and a
// manifest whose checksums and exit code are right.
func checkResultObjects(t *testing.T, b bucket.Bucket, prefix string, tasks int) {
	t.Helper()
	for i := 0; i < tasks; i++ {
		p := prefix + "/" + itoa(i) + "/1/"
		for _, f := range []string{"model.csv", "loss_history.csv", "metrics.json", "logs/stdout.log", "manifest.json"} {
			if _, err := b.Attrs(context.Background(), p+f); err != nil {
				t.Errorf("task %d: %s%s: %v", i, p, f, err)
			}
		}
		r, err := b.NewReader(context.Background(), p+"manifest.json")
		if err != nil {
			continue
		}
		data, _ := io.ReadAll(r)
		r.Close()
		var m struct {
			ExitCode int            `json:"exit_code"`
			Metrics  metricjson.Map `json:"metrics"`
			Files    []struct {
				Path   string `json:"path"`
				Size   int64  `json:"size"`
				SHA256 string `json:"sha256"`
			} `json:"files"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Errorf("task %d manifest: %v\n%s", i, err, data)
			continue
		}
		if m.ExitCode != 0 || len(m.Files) < 3 || m.Metrics["val_mse"] == 0 {
			t.Errorf("task %d manifest: exit %d, %d files, metrics %v", i, m.ExitCode, len(m.Files), m.Metrics)
		}
		for _, f := range m.Files {
			empty := f.Size == 0 && strings.HasPrefix(f.Path, "logs/") // a quiet stderr
			if len(f.SHA256) != 64 || (f.Size <= 0 && !empty) {
				t.Errorf("task %d manifest file %+v", i, f)
			}
		}
	}
}
