package attempt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cloudml/cloudml/internal/bucket"
	"github.com/cloudml/cloudml/internal/metricjson"
	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// MetricsFile is the file in CLOUDML_OUTPUT_DIR whose flat name → number
// object becomes the attempt's metrics. A value is a number, one of the
// strings "NaN", "Infinity" and "-Infinity", or null (read as NaN, since
// Octave's jsonencode writes null for NaN); see internal/metricjson.
const MetricsFile = "metrics.json"

// ManifestFile is written last under the attempt's results prefix.
const ManifestFile = "manifest.json"

// Manifest describes an attempt's results; it is the last object written
// under results/<job>/<task>/<attempt>/.
type Manifest struct {
	JobID     string             `json:"job_id"`
	TaskIndex int32              `json:"task_index"`
	Attempt   int32              `json:"attempt"`
	NodeID    string             `json:"node_id"`
	Command   []string           `json:"command"`
	Params    map[string]string  `json:"params"`
	ExitCode  int                `json:"exit_code"`
	State     string             `json:"state"`
	Message   string             `json:"message"`
	Warnings  []string           `json:"warnings,omitempty"`
	Metrics   metricjson.Map     `json:"metrics"`
	Files     []ManifestFileInfo `json:"files"`
	Timings   ManifestTimings    `json:"timings"`
}

// ManifestFileInfo is one uploaded file, its path relative to the prefix.
type ManifestFileInfo struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ManifestTimings says where the attempt's time went.
type ManifestTimings struct {
	StagingMS int64  `json:"staging_ms"`
	RunMS     int64  `json:"run_ms"`
	UploadMS  int64  `json:"upload_ms"`
	StartedAt string `json:"started_at"`
	EndedAt   string `json:"ended_at"`
}

// maxMetricsBytes bounds metrics.json: a report must stay far below the
// coordinator's request limit, which keeps at most 1,000 metrics anyway.
const maxMetricsBytes = 1 << 20

// readMetrics parses output/metrics.json, read only from within the output
// directory (see outputs.go) and at most maxMetricsBytes of it. A missing
// file means no metrics; a malformed one is a warning, never a failure.
func readMetrics(outputDir string) (metricjson.Map, string) {
	root, err := openOutput(outputDir)
	if err != nil {
		return nil, err.Error()
	}
	defer root.Close()
	f, err := openRegular(root, MetricsFile)
	if isMissing(err) {
		return nil, ""
	}
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", MetricsFile, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMetricsBytes+1))
	f.Close()
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", MetricsFile, err)
	}
	if len(data) > maxMetricsBytes {
		return nil, fmt.Sprintf("%s is larger than %d bytes; no metrics recorded", MetricsFile, maxMetricsBytes)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Sprintf("%s is not a JSON object of name to number (%v; write NaN and infinities as the strings %q, %q, %q); no metrics recorded",
			MetricsFile, err, metricjson.NaN, metricjson.PosInf, metricjson.NegInf)
	}
	metrics := make(metricjson.Map, len(raw))
	for name, v := range raw {
		f, err := metricjson.Value(v)
		if err != nil {
			return nil, fmt.Sprintf("%s: %q is %s, %v; no metrics recorded", MetricsFile, name, bytes.TrimSpace(v), err)
		}
		metrics[name] = f
	}
	return metrics, ""
}

// reserved are result paths the agent writes itself.
var reserved = map[string]bool{"logs/stdout.log": true, "logs/stderr.log": true, ManifestFile: true}

// upload writes the outputs, the log copies and, last, the manifest under
// results/<job>/<task>/<attempt>/ of the output bucket. Every object is
// written only if absent. A failed upload fails a successful attempt.
func (a *Attempt) upload(ctx context.Context, res *result, l *layout) {
	start := time.Now()
	err := a.uploadAll(ctx, res, l, start)
	res.timings.upload = time.Since(start)
	if err == nil {
		res.uploaded = true
		return
	}
	a.log.Warn("upload results failed", "error", err)
	if res.state == cloudmlv1.TaskState_TASK_STATE_SUCCEEDED {
		res.state = cloudmlv1.TaskState_TASK_STATE_FAILED
		res.msg = "upload results: " + err.Error()
		return
	}
	res.warnings = append(res.warnings, "upload results: "+err.Error())
}

func (a *Attempt) uploadAll(ctx context.Context, res *result, l *layout, start time.Time) error {
	open := a.cfg.OpenBucket
	if open == nil {
		open = bucket.Open
	}
	if a.asg.GetOutput() == "" {
		return errors.New("the assignment has no output bucket")
	}
	b, loc, err := open(ctx, a.asg.GetOutput())
	if err != nil {
		return fmt.Errorf("open %s: %w", a.asg.GetOutput(), err)
	}
	defer b.Close()
	ref := a.Ref()
	prefix := path.Join(loc.Key, "results", ref.GetJobId(), strconv.Itoa(int(ref.GetTaskIndex())), strconv.Itoa(int(ref.GetAttempt())))
	res.resultsURL = b.URL(prefix)

	var todo []resultFile
	if l != nil {
		root, err := openOutput(l.output)
		if err != nil {
			return err
		}
		defer root.Close()
		outs, warnings, err := listOutputs(root)
		if err != nil {
			return fmt.Errorf("list outputs: %w", err)
		}
		res.warnings = append(res.warnings, warnings...)
		for _, rel := range outs {
			todo = append(todo, resultFile{rel: rel, open: func() (*os.File, error) { return openRegular(root, rel) }})
		}
		// The log copies are the agent's own, in a directory the task
		// cannot write.
		for _, f := range []struct{ rel, local string }{{"logs/stdout.log", l.stdout}, {"logs/stderr.log", l.stderr}} {
			if _, err := os.Stat(f.local); err == nil {
				todo = append(todo, resultFile{rel: f.rel, open: func() (*os.File, error) { return os.Open(f.local) }})
			}
		}
	}
	files, err := a.putAll(ctx, b, prefix, todo)
	if err != nil {
		return err
	}
	m := a.manifest(res, files, time.Since(start))
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	return a.putBytes(ctx, b, prefix, ManifestFile, data)
}

func (a *Attempt) manifest(res *result, files []ManifestFileInfo, upload time.Duration) *Manifest {
	ref := a.Ref()
	if files == nil {
		files = []ManifestFileInfo{}
	}
	metrics := res.metrics
	if metrics == nil {
		metrics = metricjson.Map{}
	}
	ended := time.Now()
	return &Manifest{
		JobID: ref.GetJobId(), TaskIndex: ref.GetTaskIndex(), Attempt: ref.GetAttempt(),
		NodeID: a.cfg.NodeID, Command: a.asg.GetCommand(), Params: a.asg.GetParams(),
		ExitCode: res.exitCode, State: strings.TrimPrefix(res.state.String(), "TASK_STATE_"),
		Message: res.msg, Warnings: res.warnings, Metrics: metrics, Files: files,
		Timings: ManifestTimings{
			StagingMS: res.timings.staging.Milliseconds(), RunMS: res.timings.run.Milliseconds(),
			UploadMS:  upload.Milliseconds(),
			StartedAt: res.timings.started.UTC().Format(time.RFC3339Nano),
			EndedAt:   ended.UTC().Format(time.RFC3339Nano),
		},
	}
}

// resultFile is a local file to upload as rel.
type resultFile struct {
	rel  string
	open func() (*os.File, error)
}

// uploadParallel is how many result files upload at once. Each GCS upload
// is at least a round trip, so a task with many small outputs would
// otherwise wait for them one after another; it also bounds the upload
// buffers (up to 16 MiB each for a large file).
const uploadParallel = 8

// putAll uploads files, uploadParallel at a time, and returns their
// manifest entries in the order given; the first error stops the rest.
func (a *Attempt) putAll(ctx context.Context, b bucket.Bucket, prefix string, files []resultFile) ([]ManifestFileInfo, error) {
	infos := make([]ManifestFileInfo, len(files))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadParallel)
	for i, f := range files {
		g.Go(func() error {
			var err error
			infos[i], err = a.put(gctx, b, prefix, f)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return infos, nil
}

// put uploads one local file, hashing it on the way.
func (a *Attempt) put(ctx context.Context, b bucket.Bucket, prefix string, rf resultFile) (ManifestFileInfo, error) {
	rel := rf.rel
	f, err := rf.open()
	if err != nil {
		return ManifestFileInfo{}, fmt.Errorf("read %s: %w", rel, err)
	}
	defer f.Close()
	size := int64(-1) // unknown
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	h := sha256.New()
	cr := &countReader{r: io.TeeReader(f, h)}
	// The size spares a small file a 16 MiB upload buffer.
	if err := a.write(ctx, b, prefix, rel, bucket.WithSize(cr, size)); err != nil {
		return ManifestFileInfo{}, err
	}
	return ManifestFileInfo{Path: rel, Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func (a *Attempt) putBytes(ctx context.Context, b bucket.Bucket, prefix, rel string, data []byte) error {
	return a.write(ctx, b, prefix, rel, bytes.NewReader(data))
}

// write puts one object if absent; an object left by an earlier run of the
// same attempt (before an agent crash) is kept and logged.
func (a *Attempt) write(ctx context.Context, b bucket.Bucket, prefix, rel string, r io.Reader) error {
	key := path.Join(prefix, rel)
	err := b.Put(ctx, key, r, true)
	switch {
	case errors.Is(err, bucket.ErrExists):
		a.log.Warn("result object already exists; keeping it", "key", key)
		// Drain so the size and checksum still describe the local file.
		_, err = io.Copy(io.Discard, r)
		return err
	case err != nil:
		return fmt.Errorf("upload %s: %w", b.URL(key), err)
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
