package attempt

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/cloudml/cloudml/internal/metricjson"
)

func TestReadMetrics(t *testing.T) {
	tests := []struct {
		name, file string // file "" means no metrics.json
		want       metricjson.Map
		warn       string
	}{
		{"absent", "", nil, ""},
		{"flat", `{"loss": 0.5, "acc": 1e-3, "n": 3}`, metricjson.Map{"loss": 0.5, "acc": 0.001, "n": 3}, ""},
		{"non-finite", `{"loss": "NaN", "x": "Infinity", "y": "-Infinity", "z": null, "n": 2}`,
			metricjson.Map{"loss": math.NaN(), "x": math.Inf(1), "y": math.Inf(-1), "z": math.NaN(), "n": 2}, ""},
		{"not json", `loss=0.5`, nil, "is not a JSON object"},
		{"bare NaN", `{"loss": NaN}`, nil, `write NaN and infinities as the strings "NaN", "Infinity", "-Infinity"`},
		{"nested", `{"loss": {"x": 1}}`, nil, `"loss" is {"x": 1}, not a number`},
		{"string", `{"loss": "0.5"}`, nil, `"loss" is "0.5", not a number`},
		{"Inf", `{"loss": "Inf"}`, nil, `"loss" is "Inf", not a number`},
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
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			if (tt.warn == "") != (warn == "") || !strings.Contains(warn, tt.warn) {
				t.Errorf("warning = %q, want one containing %q", warn, tt.warn)
			}
		})
	}
}
