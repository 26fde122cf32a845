package coordinator

import (
	"math"
	"sort"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// Rank groups of result rows, best first.
const (
	rankFinite    = iota // the objective metric is a number: ordered by it
	rankNonFinite        // NaN, +Inf or -Infinity: a run that diverged
	rankMissing          // no such metric, or no objective at all
)

// sortRows orders rows best first by obj: rows whose metric is finite, by
// value; then rows whose metric is NaN or ±Inf whichever the direction (a
// diverged run is never the best, even -Inf when minimising); then rows
// without the metric. Ties and the last two groups go by task index.
func sortRows(rows []*cloudmlv1.ResultRow, obj *cloudmlv1.Objective) {
	metric := obj.GetMetric()
	rank := func(r *cloudmlv1.ResultRow) (int, float64) {
		v, ok := r.Metrics[metric]
		switch {
		case !ok || metric == "":
			return rankMissing, 0
		case math.IsNaN(v) || math.IsInf(v, 0):
			return rankNonFinite, 0
		}
		return rankFinite, v
	}
	sort.SliceStable(rows, func(a, b int) bool {
		ra, va := rank(rows[a])
		rb, vb := rank(rows[b])
		switch {
		case ra != rb:
			return ra < rb
		case va != vb:
			if obj.GetMaximize() {
				return va > vb
			}
			return va < vb
		}
		return rows[a].TaskIndex < rows[b].TaskIndex
	})
}
