package attempt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
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

// failed is the result of an attempt whose command exited 1.
func failed() *result {
	return &result{state: cloudmlv1.TaskState_TASK_STATE_FAILED, exitCode: 1, msg: "exit code 1"}
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
	f.checkWholeAs(t, res, cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, "")
}

// checkWholeAs is checkWhole for an attempt that ended in state with msg.
func (f *uploadFixture) checkWholeAs(t *testing.T, res *result, state cloudmlv1.TaskState, msg string) {
	t.Helper()
	if res.state != state || res.msg != msg || !res.uploaded || len(res.warnings) != 0 {
		t.Fatalf("after upload: state %v, uploaded %v, msg %q, warnings %q; want %v, uploaded, msg %q, no warnings",
			res.state, res.uploaded, res.msg, res.warnings, state, msg)
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
	wantState := strings.TrimPrefix(state.String(), "TASK_STATE_")
	if m.State != wantState || m.ExitCode != res.exitCode || m.Message != msg || m.JobID != "job-1" || m.TaskIndex != 2 || m.Attempt != 1 {
		t.Errorf("manifest = state %q, exit %d, message %q, ref %s/%d/%d; want %s, %d, %q, job-1/2/1",
			m.State, m.ExitCode, m.Message, m.JobID, m.TaskIndex, m.Attempt, wantState, res.exitCode, msg)
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

// TestUploadAfterFailedAttempt: a failed attempt's outputs and logs are
// uploaded too (completing an earlier partial upload), and the manifest
// records the failure; the attempt stays failed with its own message.
func TestUploadAfterFailedAttempt(t *testing.T) {
	f := newUploadFixture(t)
	f.put(t, "sub/curve.csv", f.local["sub/curve.csv"])
	res := failed()
	f.a.upload(context.Background(), res, f.l)
	f.checkWholeAs(t, res, cloudmlv1.TaskState_TASK_STATE_FAILED, "exit code 1")
}

// failingBucket refuses to write one key.
type failingBucket struct {
	bucket.Bucket
	key string
}

var errInjected = errors.New("injected write failure")

func (b failingBucket) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	if key == b.key {
		return errInjected
	}
	return b.Bucket.Put(ctx, key, r, ifAbsent)
}

// TestUploadFailure: an object that cannot be written leaves no manifest
// (the results are visibly incomplete) and the attempt not uploaded (so its
// local directory is kept). It fails a succeeded attempt; a failed attempt
// keeps its state and message and gets a warning.
func TestUploadFailure(t *testing.T) {
	tests := []struct {
		name      string
		res       *result
		wantState cloudmlv1.TaskState
		wantMsg   string // prefix
		wantWarn  bool
	}{
		{"succeeded", &result{state: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED}, cloudmlv1.TaskState_TASK_STATE_FAILED, "upload results: ", false},
		{"failed", failed(), cloudmlv1.TaskState_TASK_STATE_FAILED, "exit code 1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newUploadFixture(t)
			open := func(ctx context.Context, rawURL string) (bucket.Bucket, bucket.Location, error) {
				b, loc, err := bucket.Open(ctx, rawURL)
				return failingBucket{Bucket: b, key: path.Join(f.prefix, "sub/curve.csv")}, loc, err
			}
			f.a = New(Config{NodeID: "node-1", OpenBucket: open}, f.a.asg)
			res := tt.res
			f.a.upload(context.Background(), res, f.l)
			if res.state != tt.wantState || !strings.HasPrefix(res.msg, tt.wantMsg) || res.uploaded {
				t.Errorf("after upload: state %v, msg %q, uploaded %v; want %v, msg starting %q, not uploaded",
					res.state, res.msg, res.uploaded, tt.wantState, tt.wantMsg)
			}
			if got := strings.Join(res.warnings, "\n"); (got != "") != tt.wantWarn || (tt.wantWarn && !strings.Contains(got, "upload results: ")) {
				t.Errorf("warnings = %q, want a warning: %v", got, tt.wantWarn)
			}
			if !strings.Contains(res.message(), errInjected.Error()) {
				t.Errorf("message %q does not name the failure %q", res.message(), errInjected)
			}
			if _, ok := f.objects(t)[ManifestFile]; ok {
				t.Errorf("a manifest was written although sub/curve.csv was not")
			}
		})
	}
}
