package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	cloudmlv1 "github.com/cloudml/cloudml/proto/cloudml/v1"
)

func (a *App) resultsCmd() *cobra.Command {
	var download string
	cmd := &cobra.Command{
		Use:   "results JOB",
		Short: "Show params beside metrics, best first (--download DIR to fetch the files)",
		Long: "Results shows each task's params beside the metrics its metrics.json reported,\n" +
			"best first by the job's objective (the metric marked *), and the best task.\n" +
			"-o wide adds the attempt, exit code and results URL of each task. With\n" +
			"--download DIR every task's files are copied into DIR/task-<index>/.",
		Example: `  cloudml-client results linreg-3f9a1c
  cloudml-client results linreg-3f9a1c --download ./runs
  cloudml-client results linreg-3f9a1c -o json`,
		Args:              oneJob,
		ValidArgsFunction: a.completeJobs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.Results(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if download != "" {
				prog, wait := a.progress()
				err := c.DownloadResults(cmd.Context(), res, download, prog)
				wait()
				if err != nil {
					return err
				}
				fmt.Fprintf(a.Stderr, "downloaded results into %s\n", download)
			}
			if a.json() {
				return a.printJSON(res)
			}
			return a.printResults(args[0], res)
		},
	}
	cmd.Flags().StringVar(&download, "download", "", "also download every task's results into DIR/task-<index>/")
	_ = cmd.MarkFlagDirname("download")
	return cmd
}

func (a *App) printResults(id string, res *cloudmlv1.GetResultsResponse) error {
	params, metrics := map[string]bool{}, map[string]bool{}
	for _, r := range res.GetRows() {
		for k := range r.GetParams() {
			params[k] = true
		}
		for k := range r.GetMetrics() {
			metrics[k] = true
		}
	}
	pnames, mnames := sortedKeys(params), sortedKeys(metrics)
	obj := res.GetObjective()
	goal := "min"
	if obj.GetMaximize() {
		goal = "max"
	}
	fmt.Fprintf(a.Stdout, "job %s: %s; ranked by %s (%s); results in %s\n\n", id, jobState(res.GetJobState()), orDash(obj.GetMetric()), goal, res.GetOutput())
	t := newTable(a.Stdout)
	head := []string{"RANK", "TASK", "STATE"}
	if a.wide() {
		head = append(head, "ATTEMPT", "EXIT")
	}
	head = append(head, pnames...)
	for _, m := range mnames {
		if m == obj.GetMetric() {
			m = "*" + m
		}
		head = append(head, strings.ToUpper(m))
	}
	if a.wide() {
		head = append(head, "RESULTS")
	}
	t.row(head...)
	for i, r := range res.GetRows() {
		cells := []string{strconv.Itoa(i + 1), strconv.Itoa(int(r.GetTaskIndex())), taskState(r.GetState())}
		if a.wide() {
			cells = append(cells, count(r.GetAttempt()), count(r.GetExitCode()))
		}
		for _, p := range pnames {
			cells = append(cells, orDash(r.GetParams()[p]))
		}
		for _, m := range mnames {
			v, ok := r.GetMetrics()[m]
			cells = append(cells, map[bool]string{true: num(v), false: "-"}[ok])
		}
		if a.wide() {
			cells = append(cells, orDash(r.GetResultsUrl()))
		}
		t.row(cells...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(res.GetRows()) > 0 {
		// Rows come best first, non-finite values last: a best that is not
		// finite means no task has a usable value.
		best := res.GetRows()[0]
		if v, ok := best.GetMetrics()[obj.GetMetric()]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			fmt.Fprintf(a.Stdout, "\nbest: task %d (%s) %s=%s\n", best.GetTaskIndex(), kv(best.GetParams(), str), obj.GetMetric(), num(v))
		}
	}
	return nil
}
