package coordinator

import (
	"math"
	"sort"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// sortRows orders rows best first by obj; rows without the metric (or with
// NaN) come last; ties and metric-less rows go by task index.
func sortRows(rows []*cloudmlv1.ResultRow, obj *cloudmlv1.Objective) {
	metric := obj.GetMetric()
	value := func(r *cloudmlv1.ResultRow) (float64, bool) {
		v, ok := r.Metrics[metric]
		if !ok || math.IsNaN(v) || metric == "" {
			return 0, false
		}
		return v, true
	}
	sort.SliceStable(rows, func(a, b int) bool {
		va, oka := value(rows[a])
		vb, okb := value(rows[b])
		switch {
		case oka != okb:
			return oka
		case oka && va != vb:
			if obj.GetMaximize() {
				return va > vb
			}
			return va < vb
		}
		return rows[a].TaskIndex < rows[b].TaskIndex
	})
}
