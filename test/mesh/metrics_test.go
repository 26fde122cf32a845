package mesh

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// metricsScript writes a metrics.json per CLOUDML_PARAM_CASE: finite
// losses, the non-finite spellings (strings and Octave's null), and none.
const metricsScript = `case "$CLOUDML_PARAM_CASE" in
fin1) m='{"loss": 0.1}' ;;
fin3) m='{"loss": 0.3}' ;;
nan)  m='{"loss": "NaN", "x": "Infinity", "y": null}' ;;
ninf) m='{"loss": "-Infinity"}' ;;
inf)  m='{"loss": "Infinity"}' ;;
none) m='' ;;
esac
[ -z "$m" ] || echo "$m" > "$CLOUDML_OUTPUT_DIR/metrics.json"
`

// TestNonFiniteMetricsRankLast: NaN and ±Infinity in metrics.json travel
// from real agents through the coordinator and its store (across a
// restart) into GetResults and the manifest, and rank after every finite
// value in either direction, before tasks with no metric.
func TestNonFiniteMetricsRankLast(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, "state")
	m := newMesh(t, state)
	defer func() { m.stop() }() // the mesh running when the test ends
	m.startAgent(filepath.Join(root, "node-a"), 3)
	m.waitNodes(1)
	code := upload(t, m.bucket, codeDir(t, metricsScript))

	ctx := context.Background()
	want := map[bool]string{ // by maximize: cases in rank order
		false: "fin1 fin3 nan ninf inf none",
		true:  "fin3 fin1 nan ninf inf none",
	}
	ids := map[bool]string{}
	for _, maximize := range []bool{false, true} {
		spec := &cloudmlv1.JobSpec{
			Name: "nonfinite", Code: code, Command: []string{"sh", "task.sh"},
			Sweep:     &cloudmlv1.Sweep{Grid: map[string]*cloudmlv1.ParamValues{"case": {Values: strings.Fields("nan fin3 ninf fin1 inf none")}}},
			Timeout:   durationpb.New(time.Minute),
			Objective: &cloudmlv1.Objective{Metric: "loss", Maximize: maximize},
		}
		sub, err := m.jobs.SubmitJob(ctx, &cloudmlv1.SubmitJobRequest{Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		ids[maximize] = sub.Job.Id
		if _, state := m.follow(sub.Job.Id); state != cloudmlv1.JobState_JOB_STATE_SUCCEEDED {
			t.Fatalf("job ended %s", state)
		}
		res := checkNonFinite(t, m, sub.Job.Id, want[maximize])
		// The non-finite group keeps task index order; the sweep lists the
		// cases so that nan, ninf, inf have ascending indexes.
		if r := res.Rows; len(r) == 6 && !(r[2].TaskIndex < r[3].TaskIndex && r[3].TaskIndex < r[4].TaskIndex) {
			t.Errorf("non-finite rows not by task index: %d %d %d", r[2].TaskIndex, r[3].TaskIndex, r[4].TaskIndex)
		}
		if maximize {
			continue
		}
		for _, r := range res.Rows {
			if r.Params["case"] != "nan" {
				continue
			}
			manifest := readObject(t, r.ResultsUrl, "manifest.json")
			var mf struct {
				Metrics map[string]any `json:"metrics"`
			}
			if err := json.Unmarshal([]byte(manifest), &mf); err != nil {
				t.Fatalf("manifest.json is not JSON: %v\n%s", err, manifest)
			}
			wantM := map[string]any{"loss": "NaN", "x": "Infinity", "y": "NaN"}
			for k, v := range wantM {
				if mf.Metrics[k] != v {
					t.Errorf("manifest metrics %v, want %v", mf.Metrics, wantM)
					break
				}
			}
		}
	}

	// The store keeps NaN and ±Inf: a restarted coordinator ranks the same.
	m.stop()
	m = newMesh(t, state)
	for _, maximize := range []bool{false, true} {
		checkNonFinite(t, m, ids[maximize], want[maximize])
	}
}

// checkNonFinite asserts job id's results rank the cases as want and carry
// the non-finite values, in the proto and in its JSON form.
func checkNonFinite(t *testing.T, m *mesh, id, want string) *cloudmlv1.GetResultsResponse {
	t.Helper()
	res, err := m.jobs.GetResults(context.Background(), &cloudmlv1.GetResultsRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Rows {
		c := r.Params["case"]
		got = append(got, c)
		loss, ok := r.Metrics["loss"]
		var good bool
		switch c {
		case "nan":
			good = math.IsNaN(loss) && math.IsInf(r.Metrics["x"], 1) && math.IsNaN(r.Metrics["y"])
		case "ninf":
			good = math.IsInf(loss, -1)
		case "inf":
			good = math.IsInf(loss, 1)
		case "none":
			good = !ok
		default:
			good = ok && !math.IsNaN(loss) && !math.IsInf(loss, 0)
		}
		if !good {
			t.Errorf("job %s task %d (%s): metrics %v", id, r.TaskIndex, c, r.Metrics)
		}
	}
	if strings.Join(got, " ") != want {
		t.Errorf("job %s results order %v, want %s", id, got, want)
	}
	js, err := protojson.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"loss":"NaN"`, `"x":"Infinity"`, `"y":"NaN"`, `"loss":"-Infinity"`, `"loss":"Infinity"`} {
		if !strings.Contains(strings.ReplaceAll(string(js), " ", ""), s) {
			t.Errorf("GetResults as JSON lacks %s:\n%s", s, js)
		}
	}
	return res
}

// readObject returns one file under a results prefix.
func readObject(t *testing.T, prefixURL, name string) string {
	t.Helper()
	ctx := context.Background()
	b, loc, err := bucket.Open(ctx, prefixURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	r, err := b.NewReader(ctx, path.Join(loc.Key, name))
	if err != nil {
		t.Fatalf("%s/%s: %v", prefixURL, name, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
