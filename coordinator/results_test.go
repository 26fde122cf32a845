package coordinator

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func TestSortRows(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	metrics := []map[string]float64{ // by task index
		0: {"loss": nan},
		1: {"loss": 0.5},
		2: {"other": 1}, // no loss
		3: {"loss": -inf},
		4: {"loss": 0.2},
		5: {"loss": inf},
		6: {"loss": 0.5},
		7: nil,
		8: {"loss": -3},
	}
	tests := []struct {
		name string
		obj  *cloudmlv1.Objective
		want []int32
	}{
		// Finite by value (ties by index), then NaN/±Inf by index, then no metric.
		{"minimise", &cloudmlv1.Objective{Metric: "loss"}, []int32{8, 4, 1, 6, 0, 3, 5, 2, 7}},
		{"maximise", &cloudmlv1.Objective{Metric: "loss", Maximize: true}, []int32{1, 6, 4, 8, 0, 3, 5, 2, 7}},
		{"no objective", nil, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"other metric", &cloudmlv1.Objective{Metric: "other"}, []int32{2, 0, 1, 3, 4, 5, 6, 7, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows []*cloudmlv1.ResultRow
			for _, i := range []int{7, 5, 3, 1, 0, 2, 4, 6, 8} { // not in index order
				rows = append(rows, &cloudmlv1.ResultRow{TaskIndex: int32(i), Metrics: metrics[i]})
			}
			sortRows(rows, tt.obj)
			var got []int32
			for _, r := range rows {
				got = append(got, r.TaskIndex)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("order (-want +got):\n%s", diff)
			}
		})
	}
}
