package attempt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadMetrics(t *testing.T) {
	tests := []struct {
		name, file string // file "" means no metrics.json
		want       map[string]float64
		warn       string
	}{
		{"absent", "", nil, ""},
		{"flat", `{"loss": 0.5, "acc": 1e-3, "n": 3}`, map[string]float64{"loss": 0.5, "acc": 0.001, "n": 3}, ""},
		{"not json", `loss=0.5`, nil, "is not a JSON object"},
		{"nested", `{"loss": {"x": 1}}`, nil, `"loss" is {"x": 1}, not a number`},
		{"string", `{"loss": "0.5"}`, nil, `"loss" is "0.5", not a number`},
		{"array", `[1, 2]`, nil, "is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "" {
				if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, warn := readMetrics(dir)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			if (tt.warn == "") != (warn == "") || !strings.Contains(warn, tt.warn) {
				t.Errorf("warning = %q, want one containing %q", warn, tt.warn)
			}
		})
	}
}
