package cli

import (
	"context"
	"math"
	"strings"
	"testing"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

// resultsJobs serves one results table.
type resultsJobs struct {
	cloudmlv1.UnimplementedJobServiceServer
	res *cloudmlv1.GetResultsResponse
}

func (r *resultsJobs) GetResults(context.Context, *cloudmlv1.GetResultsRequest) (*cloudmlv1.GetResultsResponse, error) {
	return r.res, nil
}

// TestResultsShowNonFiniteMetrics: diverged runs show NaN, Infinity and
// -Infinity as metrics.json spells them, and a best that is not finite is
// not announced.
func TestResultsShowNonFiniteMetrics(t *testing.T) {
	row := func(task int32, v float64) *cloudmlv1.ResultRow {
		return &cloudmlv1.ResultRow{TaskIndex: task, State: cloudmlv1.TaskState_TASK_STATE_SUCCEEDED, Metrics: map[string]float64{"loss": v}}
	}
	obj := &cloudmlv1.Objective{Metric: "loss"}
	srv := &resultsJobs{res: &cloudmlv1.GetResultsResponse{Objective: obj, Rows: []*cloudmlv1.ResultRow{
		row(0, 0.5), row(1, math.Inf(1)), row(2, math.NaN()), row(3, math.Inf(-1))}}}
	r := runWith(t, fakeServer(t, srv), nil, "results", "j-1")
	for _, want := range []string{"0.5", "Infinity", "NaN", "-Infinity", "best: task 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("results table lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "+Inf") {
		t.Errorf("results table spells infinity as Go does:\n%s", r.stdout)
	}
	srv.res.Rows = srv.res.Rows[1:]
	if r := runWith(t, fakeServer(t, srv), nil, "results", "j-1"); r.code != ExitOK || strings.Contains(r.stdout, "best:") {
		t.Errorf("with no finite value: exit %d, want no best line:\n%s", r.code, r.stdout)
	}
	if r := runWith(t, fakeServer(t, srv), nil, "-o", "json", "results", "j-1"); !strings.Contains(r.stdout, `"Infinity"`) || !strings.Contains(r.stdout, `"NaN"`) {
		t.Errorf("results -o json:\n%s", r.stdout)
	}
}
