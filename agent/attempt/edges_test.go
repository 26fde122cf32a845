package attempt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"

	"github.com/cloudml/cloudml/internal/metricjson"
)

func TestConfigDefaults(t *testing.T) {
	for _, set := range []time.Duration{0, -time.Second} {
		c := Config{KillGrace: set, CallTimeout: set, BackoffMin: set, BackoffMax: set}
		c.setDefaults()
		if c.KillGrace != 5*time.Second || c.CallTimeout != 10*time.Second || c.BackoffMin != 200*time.Millisecond || c.BackoffMax != 10*time.Second || c.Logger == nil {
			t.Errorf("defaults for %v: %+v", set, c)
		}
	}
	c := Config{KillGrace: time.Millisecond, CallTimeout: 2 * time.Millisecond, BackoffMin: 3 * time.Millisecond, BackoffMax: 4 * time.Millisecond}
	c.setDefaults()
	if c.KillGrace != time.Millisecond || c.CallTimeout != 2*time.Millisecond || c.BackoffMin != 3*time.Millisecond || c.BackoffMax != 4*time.Millisecond {
		t.Errorf("values set were replaced: %+v", c)
	}
}

// TestListOutputsDepth: files maxOutputDepth directories deep are uploaded,
// one level deeper are skipped with a warning.
func TestListOutputsDepth(t *testing.T) {
	output := t.TempDir()
	deep := func(n int) string { return strings.Repeat("d/", n) }
	for _, f := range []string{deep(maxOutputDepth) + "ok", deep(maxOutputDepth+1) + "too-deep"} {
		p := filepath.Join(output, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := openOutput(output)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	files, warnings, err := listOutputs(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0] != deep(maxOutputDepth)+"ok" {
		t.Errorf("files %q, want only the one %d levels deep", files, maxOutputDepth)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nested more than") {
		t.Errorf("warnings %q, want one about nesting", warnings)
	}
}

// TestReadMetricsSizeLimit: a metrics.json of exactly maxMetricsBytes is
// read; one byte more is refused.
func TestReadMetricsSizeLimit(t *testing.T) {
	body := `{"loss": 0.5}`
	for _, tt := range []struct {
		size int
		ok   bool
	}{{maxMetricsBytes, true}, {maxMetricsBytes + 1, false}} {
		dir := t.TempDir()
		data := body + strings.Repeat(" ", tt.size-len(body))
		if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		m, warn := readMetrics(dir)
		if got := m != nil && warn == ""; got != tt.ok {
			t.Errorf("metrics.json of %d bytes: %v, %q; want read %v", tt.size, m, warn, tt.ok)
		}
	}
}

// TestManifestMetrics: a manifest carries the task's metrics, and an empty
// object (not null) when it wrote none.
func TestManifestMetrics(t *testing.T) {
	a := &Attempt{asg: &cloudmlv1.Assignment{Ref: &cloudmlv1.TaskRef{JobId: "j", TaskIndex: 1, Attempt: 1}}}
	for _, tt := range []struct {
		metrics metricjson.Map
		want    string
	}{{nil, `{}`}, {metricjson.Map{"loss": 0.5}, `{"loss":0.5}`}} {
		m := a.manifest(&result{state: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, metrics: tt.metrics}, nil, 0)
		b, err := json.Marshal(m.Metrics)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("manifest metrics for %v = %s, want %s", tt.metrics, b, tt.want)
		}
	}
}
