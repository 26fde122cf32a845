package attempt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cloudml/cloudml/internal/bucket"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// uploadFixture is an attempt whose outputs and log copies are on disk, an
// output file:// bucket, and the results prefix of the attempt in it.
type uploadFixture struct {
	a      *Attempt
	l      *layout
	b      bucket.Bucket
	prefix string
	local  map[string]string // result path -> content on disk
}

func newUploadFixture(t *testing.T) *uploadFixture {
	t.Helper()
	root := t.TempDir()
	b, _, err := bucket.Open(context.Background(), "file://"+root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	dir := t.TempDir()
	l := &layout{root: dir, output: filepath.Join(dir, "output"), logs: filepath.Join(dir, "logs")}
	l.stdout, l.stderr = filepath.Join(l.logs, "stdout.log"), filepath.Join(l.logs, "stderr.log")
	local := map[string]string{
		"model.bin":       "weights",
		"sub/curve.csv":   "1,0.5\n2,0.25\n",
		"logs/stdout.log": "hi\n",
		"logs/stderr.log": "warn\n",
	}
	for rel, data := range local {
		p := filepath.Join(l.output, rel)
		if strings.HasPrefix(rel, "logs/") {
			p = filepath.Join(dir, rel)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	asg := &cloudmlv1.Assignment{
		Ref:     &cloudmlv1.TaskRef{JobId: "job-1", TaskIndex: 2, Attempt: 1},
		Command: []string{"./train.sh"},
		Output:  "file://" + root,
	}
	return &uploadFixture{
		a: New(Config{NodeID: "node-1"}, asg), l: l, b: b,
		prefix: "results/job-1/2/1", local: local,
	}
}

// upload runs one upload of a succeeded attempt and returns its result.
func (f *uploadFixture) upload(t *testing.T) *result {
	t.Helper()
	res := &result{state: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED}
	f.a.upload(context.Background(), res, f.l)
	return res
}

// put writes an object under the attempt's prefix, as an earlier upload
// would have.
func (f *uploadFixture) put(t *testing.T, rel, data string) {
	t.Helper()
	if err := f.b.Put(context.Background(), path.Join(f.prefix, rel), strings.NewReader(data), true); err != nil {
		t.Fatal(err)
	}
}

// objects returns every object under the attempt's prefix by result path.
func (f *uploadFixture) objects(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	list, err := f.b.List(ctx, f.prefix+"/")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range list {
		r, err := f.b.NewReader(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimPrefix(o.Key, f.prefix+"/")] = string(data)
	}
	return got
}

// checkWhole checks that the results are whole: every local file is in the
// bucket with the same content, and the manifest lists exactly those files
// with the size and checksum of what the bucket holds.
func (f *uploadFixture) checkWhole(t *testing.T, res *result) {
	t.Helper()
	if res.state != cloudmlv1.TaskState_TASK_STATE_SUCCEEDED || !res.uploaded || len(res.warnings) != 0 {
		t.Fatalf("after upload: state %v, uploaded %v, msg %q, warnings %q; want SUCCEEDED, uploaded, no warnings",
			res.state, res.uploaded, res.msg, res.warnings)
	}
	objs := f.objects(t)
	raw, ok := objs[ManifestFile]
	if !ok {
		t.Fatalf("no %s under %s; objects: %v", ManifestFile, f.prefix, objs)
	}
	delete(objs, ManifestFile)
	if diff := cmp.Diff(f.local, objs); diff != "" {
		t.Errorf("objects in the bucket (-want +got):\n%s", diff)
	}
	var m Manifest
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("manifest: %v\n%s", err, raw)
	}
	got := map[string]ManifestFileInfo{}
	for _, fi := range m.Files {
		got[fi.Path] = fi
	}
	want := map[string]ManifestFileInfo{}
	for rel, data := range objs {
		sum := sha256.Sum256([]byte(data))
		want[rel] = ManifestFileInfo{Path: rel, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("manifest files (-want +got):\n%s", diff)
	}
	if m.State != "SUCCEEDED" || m.JobID != "job-1" || m.TaskIndex != 2 || m.Attempt != 1 {
		t.Errorf("manifest = state %q, ref %s/%d/%d; want SUCCEEDED, job-1/2/1", m.State, m.JobID, m.TaskIndex, m.Attempt)
	}
}

// TestUploadKeepsObjectsAlreadyThere: an upload retried after its first
// run's response was lost (or after an agent crash) finds every result
// object of the attempt already in the bucket. It keeps them and succeeds;
// the attempt is not failed for an upload that already happened.
func TestUploadKeepsObjectsAlreadyThere(t *testing.T) {
	f := newUploadFixture(t)
	f.checkWhole(t, f.upload(t))
	first := f.objects(t)

	res := f.upload(t)
	f.checkWhole(t, res)
	// The manifest already there is the first upload's: nothing replaced.
	if diff := cmp.Diff(first, f.objects(t)); diff != "" {
		t.Errorf("objects after the retried upload (-first +now):\n%s", diff)
	}
	if want := f.b.URL(f.prefix); res.resultsURL != want {
		t.Errorf("results URL = %q, want %q", res.resultsURL, want)
	}
}

// TestUploadCompletesPartialUpload: an earlier upload of the attempt wrote
// some objects and died before the manifest. The next upload keeps those,
// writes the rest and the manifest, and the results are whole.
func TestUploadCompletesPartialUpload(t *testing.T) {
	f := newUploadFixture(t)
	f.put(t, "model.bin", f.local["model.bin"])
	f.put(t, "logs/stdout.log", f.local["logs/stdout.log"])
	if _, ok := f.objects(t)[ManifestFile]; ok {
		t.Fatal("a manifest before the upload: the scenario did not happen")
	}

	f.checkWhole(t, f.upload(t))
}
